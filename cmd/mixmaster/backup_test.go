package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mixmaster"
	"mixmaster/store"
)

// backupRoot makes a build root whose database holds n jobs and a config
// pointing at it; it returns the config path and the database path.
func backupRoot(t *testing.T, n int) (config, dbPath string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "builds")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	dbPath = filepath.Join(root, "mixmaster.db")
	db, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		job := &mixmaster.Job{
			Kind:    mixmaster.KindWebhook,
			Trigger: mixmaster.TriggerWebhook,
			Project: "test-org/test-repo",
			Target:  "master",
			Command: "make",
			Commit:  strings.Repeat(string(rune('a'+i)), 40),
		}
		if _, _, err := db.CreateJob(context.Background(), job); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "mixmaster.ini")
	if err := os.WriteFile(config, []byte("[_]\nbuildRoot = "+root+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, dbPath
}

// runCmd runs the command line and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(context.Background(), append([]string{"mixmaster"}, args...), &out, &out)
	return code, out.String()
}

// checkBackupJobs opens the copy as the service would and counts its jobs.
func checkBackupJobs(t *testing.T, path string, want int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("backup has mode %o, want 600", mode)
	}
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	jobs, err := db.Jobs(context.Background(), mixmaster.JobFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != want {
		t.Fatalf("backup holds %d jobs, want %d", len(jobs), want)
	}
	for _, j := range jobs {
		if j.Project != "test-org/test-repo" || j.Status != mixmaster.StatusQueued {
			t.Errorf("backup job %d: %s %s", j.ID, j.Project, j.Status)
		}
	}
}

func TestBackupOffline(t *testing.T) {
	config, _ := backupRoot(t, 3)
	out := filepath.Join(t.TempDir(), "copy.db")
	if code, text := runCmd(t, "backup", "--config", config, out); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, text)
	}
	checkBackupJobs(t, out, 3)
	// Nothing but the backup is left in its directory.
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Errorf("backup directory holds %d files, want 1", len(ents))
	}

	// An existing file is kept unless --force says otherwise.
	if err := os.WriteFile(out, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, text := runCmd(t, "backup", "--config", config, out)
	if code != 1 || !strings.Contains(text, "--force") {
		t.Fatalf("backup over an existing file: exit %d: %s", code, text)
	}
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatal("backup without --force changed the existing file")
	}
	if code, text := runCmd(t, "backup", "--config", config, "--force", out); code != 0 {
		t.Fatalf("backup --force: exit %d: %s", code, text)
	}
	checkBackupJobs(t, out, 3)
}

func TestBackupMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "mixmaster.ini")
	os.WriteFile(config, []byte("[_]\nbuildRoot = "+dir+"\n"), 0o600)
	out := filepath.Join(dir, "copy.db")
	if code, text := runCmd(t, "backup", "--config", config, out); code != 1 || !strings.Contains(text, "no database") {
		t.Fatalf("backup of a build root without a database: exit %d: %s", code, text)
	}
	if _, err := os.Stat(filepath.Join(dir, "mixmaster.db")); err == nil {
		t.Error("backup created the database it was to copy")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed backup left its file")
	}
}

// TestBackupFromServer holds the database open as the service does and
// checks that the copy comes from the service instead.
func TestBackupFromServer(t *testing.T) {
	config, dbPath := backupRoot(t, 2)
	db, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/prefix/api/v1/backup" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, `{"error":"Unauthorized."}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		db.Backup(w)
	}))
	defer srv.Close()

	t.Setenv("MIXMASTER_URL", srv.URL+"/prefix")
	t.Setenv("MIXMASTER_TOKEN", "wrong")
	out := filepath.Join(t.TempDir(), "copy.db")
	code, text := runCmd(t, "backup", "--config", config, out)
	if code != 1 || !strings.Contains(text, "401") || !strings.Contains(text, "MIXMASTER_TOKEN") {
		t.Fatalf("backup with a wrong token: exit %d: %s", code, text)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused backup left its file")
	}

	t.Setenv("MIXMASTER_TOKEN", "s3cret")
	if code, text := runCmd(t, "backup", "--config", config, out); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, text)
	}
	checkBackupJobs(t, out, 2)

	// A service without the route: say what to do instead.
	code, text = runCmd(t, "backup", "--config", config, "--server", srv.URL, filepath.Join(t.TempDir(), "x.db"))
	if code != 1 || !strings.Contains(text, "stop it") {
		t.Fatalf("backup from a service without the route: exit %d: %s", code, text)
	}
}

// TestBackupRejectsGarbage checks that a reply which is not a database is
// not kept as a backup.
func TestBackupRejectsGarbage(t *testing.T) {
	config, dbPath := backupRoot(t, 1)
	db, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>not a database</html>"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, "copy.db")
	if code, text := runCmd(t, "backup", "--config", config, "--server", srv.URL, out); code != 1 || !strings.Contains(text, "not a valid database") {
		t.Fatalf("backup of garbage: exit %d: %s", code, text)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a failed backup left %d files", len(ents))
	}
}

// copyHoldsSuccess opens a backup copy as the service would and checks
// that it holds job id, succeeded.
func copyHoldsSuccess(t *testing.T, path string, id mixmaster.JobID) {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if j, err := db.Job(t.Context(), id); err != nil || j.Status != mixmaster.StatusSucceeded {
		t.Fatalf("job in the copy: %+v, %v", j, err)
	}
}

// TestBackupOfRunningService copies the database of a live service over
// its own API while it holds the database's lock.
func TestBackupOfRunningService(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, "[_]\nbuildRoot = @ROOT@\n\n[test-org/test-repo]\n.repository = "+repo.Dir+"\nproduction = true\n")
	a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	s.wait(t, a.ID)
	out := filepath.Join(t.TempDir(), "copy.db")
	if code, text := runCmd(t, "backup", "--config", s.Config.Path, "--server", s.URL, out); code != 0 {
		t.Fatalf("backup: %d %s", code, text)
	}
	copyHoldsSuccess(t, out, a.ID)
}

// TestBackupWithoutConfig asks the running service when no config says
// where the database is, as right after make run, and makes the target's
// folder.
func TestBackupWithoutConfig(t *testing.T) {
	repo := newTestRepo(t)
	s := startServer(t, "[_]\nbuildRoot = @ROOT@\n\n[test-org/test-repo]\n.repository = "+repo.Dir+"\nproduction = true\n")
	a := s.submit(t, map[string]any{"project": "test-org/test-repo", "target": "production"})
	s.wait(t, a.ID)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("MIXMASTER_CONFIG", "")
	t.Setenv("MIXMASTER_URL", s.URL)
	out := filepath.Join(os.Getenv("HOME"), "backups", "daily", "copy.db")
	if code, text := runCmd(t, "backup", out); code != 0 {
		t.Fatalf("backup: %d %s", code, text)
	}
	copyHoldsSuccess(t, out, a.ID)
	if fi, err := os.Stat(filepath.Dir(out)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the new folder: %v, %v; want mode 700", fi, err)
	}

	// Without a config or a service, it says both.
	t.Setenv("MIXMASTER_URL", "http://127.0.0.1:1")
	code, text := runCmd(t, "backup", filepath.Join(t.TempDir(), "x.db"))
	if code != 1 || !strings.Contains(text, "no config at") || !strings.Contains(text, "asking the service failed") {
		t.Errorf("backup with neither: exit %d: %s", code, text)
	}
}
