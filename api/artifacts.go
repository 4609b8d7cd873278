package api

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"

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
		return serveArtifact(c, root, p)
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-tar")
	w.Header().Set(echo.HeaderContentDisposition, `attachment; filename="job-`+id.String()+`-artifacts.tar"`)
	w.WriteHeader(http.StatusOK)
	if err := h.WriteTar(w, dir); err != nil {
		// The status is out; all that is left is to cut the stream short,
		// which the client sees as a truncated archive.
		h.logger().Error("stream artifacts", "job_id", id, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// serveArtifact sends one regular file of the tree.
func serveArtifact(c echo.Context, root *os.Root, name string) error {
	clean := path.Clean("/" + name)[1:]
	if clean == "" || !fs.ValidPath(clean) {
		return mixmaster.Errorf(mixmaster.EINVALID, "Invalid artifact path '%s'.", printable(name))
	}
	f, err := root.Open(clean)
	if err != nil {
		return mixmaster.Errorf(mixmaster.ENOTFOUND, "No artifact '%s'.", printable(clean))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return mixmaster.Errorf(mixmaster.ENOTFOUND, "No artifact '%s'.", printable(clean))
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/octet-stream")
	w.Header().Set(echo.HeaderContentLength, strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	_, err = io.Copy(w, f)
	return err
}
