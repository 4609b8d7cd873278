package webui

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
)

// asset is one embedded static file.
type asset struct {
	body        []byte
	contentType string
}

// assets maps content-hashed names ("app.1a2b3c4d5e.css") to files, and
// assetNames the plain names to the hashed ones. A changed file gets a new
// name, so browsers may keep each name forever.
var assets, assetNames = loadAssets()

func loadAssets() (map[string]asset, map[string]string) {
	byHash, names := map[string]asset{}, map[string]string{}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(staticFS, p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		sum := sha256.Sum256(body)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:5]) + ext
		ct := mime.TypeByExtension(ext)
		if ct == "" {
			ct = "application/octet-stream"
		}
		byHash[hashed] = asset{body: body, contentType: ct}
		names[name] = hashed
		return nil
	})
	if err != nil {
		panic(err)
	}
	return byHash, names
}

// staticURL is the address of an embedded file, for templates.
func staticURL(name string) string {
	hashed, ok := assetNames[name]
	if !ok {
		panic("webui: no static file " + name)
	}
	return "/static/" + hashed
}

// serveStatic handles GET /static/<hashed name>.
func serveStatic(c echo.Context) error {
	a, ok := assets[c.Param("*")]
	if !ok {
		return echo.ErrNotFound
	}
	hd := c.Response().Header()
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("X-Content-Type-Options", "nosniff")
	return c.Blob(http.StatusOK, a.contentType, a.body)
}
