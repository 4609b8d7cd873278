# One 10 MiB line with no newline inside.
head -c 10485760 /dev/zero | busybox tr "\000" a
echo
