package main

import (
	"github.com/labstack/echo/v4"

	"mixmaster/api"
	"mixmaster/jobs"
	"mixmaster/webui"
)

// registerUI adds the dashboard to e, built from the same services as the
// API handler h, and lets it render the job pages h serves.
func (m *Main) registerUI(e *echo.Echo, h *api.Handler, svc *jobs.Service) {
	if svc.ProjectNames == nil {
		// The catalog lists webhook projects by name; set before serving.
		svc.ProjectNames = m.Config.ProjectNames
	}
	ui := &webui.Handler{
		Jobs:      h.Jobs,
		Logs:      h.Logs,
		Events:    h.Events,
		Canceler:  h.Canceler,
		Rerunner:  svc,
		Submitter: svc,
		Artifacts: svc,
		Catalog:   svc,
		Version:   version,
		Logger:    m.Logger,
	}
	if m.Auth != nil {
		ui.Auth = m.Auth
		ui.RequireRead = m.Auth.RequireRead()
		ui.RequireWrite = m.Auth.RequireWrite()
		ui.NewSessionCookie = m.Auth.SessionCookie
		ui.IsHTTPS = m.Auth.IsHTTPS
	}
	h.JobPage = ui.JobPage
	ui.Register(e)
}
