package webui

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// loginData is the body of the login page.
type loginData struct {
	Enabled bool
	Name    string
	Next    string
}

// loginPage handles GET /login?next=.
func (h *Handler) loginPage(c echo.Context) error {
	return h.renderLogin(c, http.StatusOK, "", "")
}

func (h *Handler) renderLogin(c echo.Context, status int, name, msg string) error {
	next := c.FormValue("next")
	if !localPath(next) {
		next = "/"
	}
	p := h.newPage(c, "Sign in", "login")
	p.Error = msg
	p.Data = &loginData{Enabled: h.loginEnabled(), Name: name, Next: next}
	return h.render(c, status, "login", p)
}

// login handles POST /login: a right name and password get a session
// cookie and go back to where they came from.
func (h *Handler) login(c echo.Context) error {
	if !h.loginEnabled() {
		return h.renderLogin(c, http.StatusNotFound, "", "")
	}
	name, password := c.FormValue("name"), c.FormValue("password")
	session, err := h.Auth.Login(name, password)
	if err != nil {
		status, msg, ok := userError(err)
		if !ok {
			return err
		}
		return h.renderLogin(c, status, name, msg)
	}
	c.SetCookie(h.NewSessionCookie(session, c.IsTLS()))
	next := c.FormValue("next")
	if !localPath(next) {
		next = "/"
	}
	return c.Redirect(http.StatusSeeOther, next)
}

// logout handles POST /logout: the session cookie is removed.
func (h *Handler) logout(c echo.Context) error {
	if h.NewSessionCookie != nil {
		ck := h.NewSessionCookie("", c.IsTLS())
		ck.MaxAge = -1
		c.SetCookie(ck)
	} else {
		c.SetCookie(&http.Cookie{Name: mixmaster.SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true})
	}
	return c.Redirect(http.StatusSeeOther, "/")
}
