# Links that lead out of the artifacts tree.
busybox ln -s /etc/passwd artifacts/evil
busybox ln -s ../../.. artifacts/up
echo ok > artifacts/ok.txt
