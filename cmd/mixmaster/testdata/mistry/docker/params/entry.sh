cat params/foo > artifacts/out.txt
