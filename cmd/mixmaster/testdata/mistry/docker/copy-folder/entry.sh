touch /data/artifacts/foo
stat /koko/lala.txt
cat /koko/lala.txt > artifacts/lala.txt
