sleep 1
echo concurrent > artifacts/out.txt
