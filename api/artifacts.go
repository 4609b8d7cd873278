package api

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"syscall"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// artifacts handles GET /api/v1/jobs/:id/artifacts: the job's artifact tree
// as a tar stream, or with ?path= one file of it. The directory comes from
// the job record, never from the request, and the file is opened through
// an os.Root, so no path can reach outside the tree.
func (h *Handler) artifacts(c echo.Context) error {
	job, err := h.job(c)
	if err != nil {
		return err
	}
	id := job.ID
	if !job.Status.Done() {
		return mixmaster.Errorf(mixmaster.ECONFLICT, "job %d is %s; its artifacts are not ready", id, job.Status)
	}
	dir := h.Artifacts.ArtifactsDir(job)
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return mixmaster.Errorf(mixmaster.ENOTFOUND, "job %d kept no artifacts", id)
	}
	if err != nil {
		return err
	}
	defer root.Close()

	if p := c.QueryParam("path"); p != "" {
		return h.serveArtifact(c, id, root, p)
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-tar")
	w.Header().Set(echo.HeaderContentDisposition, attachment("job-"+id.String()+"-artifacts.tar"))
	w.WriteHeader(http.StatusOK)
	if err := h.WriteTar(w, dir); err != nil {
		h.abortStream(id, err)
	}
	return nil
}

// abortStream ends a download whose status is already out: all that is
// left is to cut the stream short, which the client sees as a truncated
// file.
func (h *Handler) abortStream(id mixmaster.JobID, err error) {
	h.logger().Error("stream artifacts", "job_id", id, "err", err)
	panic(http.ErrAbortHandler)
}

// serveArtifact sends one regular file of the tree, as a download that no
// browser renders in the service's origin.
func (h *Handler) serveArtifact(c echo.Context, id mixmaster.JobID, root *os.Root, name string) error {
	clean := path.Clean("/" + name)[1:]
	if clean == "" || !fs.ValidPath(clean) {
		return mixmaster.Errorf(mixmaster.EINVALID, "Invalid artifact path '%s'.", printable(name))
	}
	f, fi, err := openRegular(root, clean)
	if err != nil {
		return err
	}
	defer f.Close()
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/octet-stream")
	w.Header().Set(echo.HeaderXContentTypeOptions, "nosniff")
	w.Header().Set(echo.HeaderContentDisposition, attachment(path.Base(clean)))
	w.Header().Set(echo.HeaderContentLength, strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.CopyN(w, f, fi.Size()); err != nil {
		h.abortStream(id, fmt.Errorf("%s: %w", clean, err))
	}
	return nil
}

// openRegular opens the artifact name only if it is a regular file. A
// FIFO would block the open until some writer came, a device's open can
// act on the device, and a link is not offered; so the name is lstat'ed
// first and nothing else is opened. O_NONBLOCK and O_NOFOLLOW keep a FIFO
// or link swapped in after the lstat from blocking or being followed, and
// the fstat of what was opened must be that same regular file.
func openRegular(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	lfi, err := root.Lstat(name)
	if err != nil {
		return nil, nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "No artifact '%s'.", printable(name))
	}
	notRegular := mixmaster.Errorf(mixmaster.ENOTFOUND, "Artifact '%s' is not a regular file.", printable(name))
	if !lfi.Mode().IsRegular() {
		return nil, nil, notRegular
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ENXIO) || errors.Is(err, fs.ErrNotExist) {
		return nil, nil, notRegular // a socket, or gone, since the lstat
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open artifact: %w", err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || !os.SameFile(fi, lfi) {
		f.Close()
		return nil, nil, notRegular
	}
	return f, fi, nil
}

// attachment is a Content-Disposition value offering filename as a
// download, quoted or RFC 2231-encoded as the name needs.
func attachment(filename string) string {
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": filename}); v != "" {
		return v
	}
	return "attachment"
}
