package mixmaster

import (
	"bytes"
	"io"
)

// TailLines reads at most the last n bytes of a job log as whole lines:
// it starts after a newline, so no partial line comes first, and returns
// the offset of the first byte it returns. A window holding no line end
// yields no text and the offset of its end. Bytes written after the call
// found the log's size are left out, so a growing log is read consistently.
func TailLines(r io.ReadSeeker, n int64) (offset int64, text []byte, err error) {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, nil, err
	}
	start := max(size-max(n, 0), 0)
	// One byte before start says whether start begins a line.
	from := max(start-1, 0)
	if _, err := r.Seek(from, io.SeekStart); err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, size-from))
	if err != nil {
		return 0, nil, err
	}
	if start == 0 {
		return 0, b, nil
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return from + int64(len(b)), nil, nil
	}
	return from + int64(i+1), b[i+1:], nil
}
