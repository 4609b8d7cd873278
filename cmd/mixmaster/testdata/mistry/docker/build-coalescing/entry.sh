sleep 2
echo "coalescing!" > artifacts/out.txt
