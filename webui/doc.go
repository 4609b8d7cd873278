// Package webui serves the dashboard: server-rendered HTML pages of jobs
// and projects, the forms that start, cancel and re-run builds, the login
// page, and a small embedded script that keeps pages live over Server-Sent
// Events. It sees the service only through the interfaces of package
// mixmaster.
package webui
