set -e
echo "this is stderr" >&2
echo "this is stdout"
missing_command
