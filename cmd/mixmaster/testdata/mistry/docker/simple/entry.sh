touch artifacts/out.txt
