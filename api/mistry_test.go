package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mixmaster"
)

// memStore is a job store in memory, enough for the read routes.
type memStore struct {
	mu   sync.Mutex
	jobs map[mixmaster.JobID]*mixmaster.Job
}

func (s *memStore) put(j *mixmaster.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs == nil {
		s.jobs = make(map[mixmaster.JobID]*mixmaster.Job)
	}
	c := *j
	s.jobs[j.ID] = &c
}

func (s *memStore) update(id mixmaster.JobID, fn func(*mixmaster.Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.jobs[id])
}

func (s *memStore) get(id mixmaster.JobID) (*mixmaster.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "Job %d not found.", id)
	}
	c := *j
	return &c, nil
}

func (s *memStore) fake() *fakeJobStore {
	return &fakeJobStore{
		JobFn: func(_ context.Context, id mixmaster.JobID) (*mixmaster.Job, error) { return s.get(id) },
		JobsFn: func(_ context.Context, f mixmaster.JobFilter) ([]*mixmaster.Job, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			var ids []mixmaster.JobID
			for id := range s.jobs {
				if f.Before == 0 || id < f.Before {
					ids = append(ids, id)
				}
			}
			slices.Sort(ids)
			slices.Reverse(ids)
			var out []*mixmaster.Job
			for _, id := range ids {
				if len(out) == f.Limit {
					break
				}
				c := *s.jobs[id]
				out = append(out, &c)
			}
			return out, nil
		},
	}
}

// artifactsDir is where the fake submitter says a job's files lie.
func artifactsDir(j *mixmaster.Job) string {
	return "/srv/builds/" + j.Project + "/ready/" + j.ID.String() + "/data/artifacts"
}

// submitter answers every request with res (or err) and records requests.
type submitter struct {
	mu    sync.Mutex
	got   []mixmaster.ArtifactRequest
	res   mixmaster.ArtifactResult
	err   error
	waits int
	// done is what Wait returns; nil makes Wait block until ctx ends.
	done *mixmaster.Job
}

func (s *submitter) fake() *fakeArtifacts {
	return &fakeArtifacts{
		SubmitArtifactFn: func(_ context.Context, r mixmaster.ArtifactRequest) (mixmaster.ArtifactResult, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.got = append(s.got, r)
			return s.res, s.err
		},
		WaitFn: func(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
			s.mu.Lock()
			s.waits++
			done := s.done
			s.mu.Unlock()
			if done == nil {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			if done.ID != id {
				return nil, errors.New("wait for the wrong job")
			}
			return done, nil
		},
		ArtifactsDirFn: artifactsDir,
	}
}

func (s *submitter) requests() []mixmaster.ArtifactRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *submitter) waited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waits
}

func intp(n int) *int { return &n }

var (
	queuedAt   = time.Date(2026, 11, 21, 0, 46, 55, 123456789, time.UTC)
	startedAt  = queuedAt.Add(time.Second)
	finishedAt = startedAt.Add(1500*time.Millisecond + 777*time.Microsecond)
)

// artifactJob is job id of project ok in status st.
func artifactJob(id mixmaster.JobID, st mixmaster.Status) *mixmaster.Job {
	j := &mixmaster.Job{
		ID: id, Kind: mixmaster.KindArtifact, Trigger: mixmaster.TriggerClient, Status: st,
		Project: "ok", Params: map[string]string{"foo": "bar"}, Group: "g",
		QueuedAt: queuedAt,
	}
	if st != mixmaster.StatusQueued {
		j.StartedAt = startedAt
	}
	if st.Done() {
		j.FinishedAt = finishedAt
	}
	switch st {
	case mixmaster.StatusSucceeded:
		j.ExitCode = intp(0)
	case mixmaster.StatusFailed:
		j.ExitCode = intp(3)
		j.Error = "command exited with status 3"
	case mixmaster.StatusErrored:
		j.Error = "could not build docker image: unknown instruction: INVALIDCOMMAND"
	}
	return j
}

const buildLog = "2026-11-21T00:46:56.295Z # Build started\n" +
	"2026-11-21T00:46:56.300Z O hello stdout\n" +
	"2026-11-21T00:46:56.301Z ! this is stderr\n" +
	"2026-11-21T00:46:56.302Z ! missing_command: command not found\n" +
	"2026-11-21T00:46:56.400Z # Build finished\n"

// keys returns the keys of a JSON object in the order they appear.
func keys(t testing.TB, raw []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", raw)
	}
	var out []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

var buildInfoKeys = []string{
	"Params", "Group", "Path", "Cached", "Coalesced", "Incremental", "ExitCode", "ErrBuild",
	"ContainerStdouterr", "ContainerStderr", "TransportMethod", "StartedAt", "Duration", "URL",
}

// without returns keys less the named ones.
func without(keys []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return slices.Contains(drop, k) })
}

func TestNewArtifactJobDecoding(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       mixmaster.ArtifactRequest
	}{
		{"client", `{"Project":"ok","Params":{"foo":"bar"},"Group":"","Rebuild":false}`,
			mixmaster.ArtifactRequest{Project: "ok", Params: map[string]string{"foo": "bar"}}},
		{"any case, unknown keys", `{"project":"ok","PARAMS":{"a":"b","_o":"x"},"gRoUp":"g","REBUILD":true,"extra":{"x":[1]}}`,
			mixmaster.ArtifactRequest{Project: "ok", Params: map[string]string{"a": "b", "_o": "x"}, Group: "g", Rebuild: true}},
		{"no params", `{"project":"ok"}`, mixmaster.ArtifactRequest{Project: "ok"}},
		{"null", `null`, mixmaster.ArtifactRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := &submitter{res: mixmaster.ArtifactResult{Job: artifactJob(1, mixmaster.StatusQueued)}}
			e, _ := newEcho(t, &Handler{Artifacts: sub.fake()})
			rec := serve(e, http.MethodPost, "/jobs?async", tc.body, "User-Agent", "curl/8.5")
			if rec.Code != http.StatusCreated {
				t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
			}
			tc.want.Trigger = mixmaster.TriggerAPI
			if got := sub.requests(); len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Errorf("submitted %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNewArtifactJobTrigger(t *testing.T) {
	for ua, want := range map[string]mixmaster.Trigger{
		"Go-http-client/1.1": mixmaster.TriggerClient,
		"mixmaster/1.0":      mixmaster.TriggerClient,
		"curl/8.5.0":         mixmaster.TriggerAPI,
		"":                   mixmaster.TriggerAPI,
	} {
		sub := &submitter{res: mixmaster.ArtifactResult{Job: artifactJob(1, mixmaster.StatusQueued)}}
		e, _ := newEcho(t, &Handler{Artifacts: sub.fake()})
		req := httptest.NewRequest(http.MethodPost, "/jobs?async", strings.NewReader(`{"project":"ok"}`))
		req.Header.Set("User-Agent", ua)
		if ua == "" {
			req.Header.Del("User-Agent")
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if got := sub.requests(); rec.Code != http.StatusCreated || len(got) != 1 || got[0].Trigger != want {
			t.Errorf("User-Agent %q: %d, submitted %+v, want trigger %s", ua, rec.Code, got, want)
		}
	}
}

func TestNewArtifactJobRejected(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		err        error // the submitter's answer
		status     int
		msg        string
	}{
		{"number param", `{"project":"ok","params":{"foo":1}}`, nil, 400, "Params must be an object of string values.\n"},
		{"object param", `{"project":"ok","params":{"foo":{"x":"y"}}}`, nil, 400, "Params must be an object of string values.\n"},
		{"params not an object", `{"project":"ok","params":"foo=bar"}`, nil, 400, "Params must be an object of string values.\n"},
		{"number project", `{"project":5}`, nil, 400, "Project must be a string.\n"},
		{"array", `[1]`, nil, 400, "The payload must be a JSON object.\n"},
		{"malformed", `{"project": "ok", "token": "s3cr3t" oops}`, nil, 400, ""},
		{"empty body", ``, nil, 400, "Malformed JSON at byte 0: unexpected end of JSON input.\n"},
		{"no project", `{}`, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "no project given"), 422, "no project given\n"},
		{"unknown project", `{"project":"nope"}`, mixmaster.Errorf(mixmaster.EUNPROCESSABLE, "Unknown project 'nope'"), 422, "Unknown project 'nope'\n"},
		{"backlog", `{"project":"ok"}`, mixmaster.Errorf(mixmaster.EUNAVAILABLE, "build queue is full (3 jobs waiting); try again later"), 503,
			"build queue is full (3 jobs waiting); try again later\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := &submitter{err: tc.err}
			e, _ := newEcho(t, &Handler{Artifacts: sub.fake()})
			rec := serve(e, http.MethodPost, "/jobs", tc.body, "Content-Type", "application/json")
			if tc.msg == "" {
				if rec.Code != tc.status || !strings.HasPrefix(rec.Body.String(), "Malformed JSON") || strings.Contains(rec.Body.String(), "s3cr3t") {
					t.Errorf("got %d %q", rec.Code, rec.Body.String())
				}
			} else {
				wantText(t, rec, tc.status, tc.msg)
			}
			if n := len(sub.requests()); tc.err == nil && n != 0 {
				t.Errorf("%d requests submitted; want none", n)
			}
			if n := sub.waited(); n != 0 {
				t.Errorf("waited %d times", n)
			}
		})
	}
}

func TestNewArtifactJobBodyLimit(t *testing.T) {
	big := `{"project":"ok","params":{"x":"` + strings.Repeat("x", 200) + `"}}`
	for _, chunked := range []bool{false, true} {
		sub := &submitter{}
		// The general limit is larger: POST /jobs has its own.
		e, _ := newEcho(t, &Handler{Artifacts: sub.fake(), JobBodyLimit: 64, BodyLimit: 1 << 20})
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(body) // hides the length
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/jobs", body))
		wantText(t, rec, http.StatusRequestEntityTooLarge, "Request body too large (limit 64 bytes).\n")
	}

	// The default admits a request with many params.
	if DefaultJobBodyLimit != 64<<10 {
		t.Errorf("DefaultJobBodyLimit = %d", DefaultJobBodyLimit)
	}
	sub := &submitter{res: mixmaster.ArtifactResult{Job: artifactJob(1, mixmaster.StatusQueued)}}
	e, _ := newEcho(t, &Handler{Artifacts: sub.fake()})
	if rec := serve(e, http.MethodPost, "/jobs?async", big); rec.Code != http.StatusCreated {
		t.Errorf("status = %d: %s", rec.Code, rec.Body.String())
	}
}

func TestNewArtifactJobSync(t *testing.T) {
	queued := artifactJob(7, mixmaster.StatusQueued)
	done := artifactJob(7, mixmaster.StatusSucceeded)
	done.Incremental = true
	dir, logs := logDir(t)
	appendFile(t, filepath.Join(dir, "7.log"), buildLog)
	sub := &submitter{res: mixmaster.ArtifactResult{Job: queued}, done: done}
	e, _ := newEcho(t, &Handler{Artifacts: sub.fake(), Logs: logs})

	rec := serve(e, http.MethodPost, "/jobs", `{"project":"ok","params":{"foo":"bar"},"group":"g"}`, "User-Agent", "Go-http-client/1.1")
	if rec.Code != http.StatusCreated {
		t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := keys(t, rec.Body.Bytes()); !slices.Equal(got, buildInfoKeys) {
		t.Errorf("keys = %q\nwant   %q", got, buildInfoKeys)
	}
	var bi BuildInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &bi); err != nil {
		t.Fatal(err)
	}
	want := BuildInfo{
		Params:             map[string]string{"foo": "bar"},
		Group:              "g",
		Path:               "/srv/builds/ok/ready/7/data/artifacts",
		Incremental:        true,
		ExitCode:           0,
		ContainerStdouterr: buildLog,
		ContainerStderr:    "this is stderr\nmissing_command: command not found\n",
		TransportMethod:    "rsync",
		StartedAt:          queuedAt,
		Duration:           1500 * time.Millisecond,
		URL:                "job/ok/7",
	}
	if !reflect.DeepEqual(bi, want) {
		t.Errorf("BuildInfo = %+v\nwant        %+v", bi, want)
	}
	if !strings.Contains(rec.Body.String(), `"StartedAt":"2026-11-21T00:46:55.123456789Z","Duration":1500000000,`) {
		t.Errorf("times: %s", rec.Body.String())
	}
	if sub.waited() != 1 {
		t.Errorf("waited %d times, want 1", sub.waited())
	}
}

func TestNewArtifactJobFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		res        mixmaster.ArtifactResult
		wantWaited int
	}{
		// A cached answer is final already: nothing to wait for.
		{"cached", mixmaster.ArtifactResult{Job: artifactJob(5, mixmaster.StatusSucceeded), Cached: true}, 0},
		{"coalesced", mixmaster.ArtifactResult{Job: artifactJob(5, mixmaster.StatusRunning), Coalesced: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, logs := logDir(t)
			sub := &submitter{res: tc.res, done: artifactJob(5, mixmaster.StatusSucceeded)}
			e, _ := newEcho(t, &Handler{Artifacts: sub.fake(), Logs: logs})
			rec := serve(e, http.MethodPost, "/jobs", `{"project":"ok"}`)
			if rec.Code != http.StatusCreated {
				t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
			}
			var bi BuildInfo
			if err := json.Unmarshal(rec.Body.Bytes(), &bi); err != nil {
				t.Fatal(err)
			}
			if bi.Cached != tc.res.Cached || bi.Coalesced != tc.res.Coalesced || bi.ExitCode != 0 {
				t.Errorf("BuildInfo = %+v", bi)
			}
			if sub.waited() != tc.wantWaited {
				t.Errorf("waited %d times, want %d", sub.waited(), tc.wantWaited)
			}
			// No log yet: the log fields are left out.
			if got := keys(t, rec.Body.Bytes()); !slices.Equal(got, without(buildInfoKeys, "ContainerStdouterr", "ContainerStderr")) {
				t.Errorf("keys = %q", got)
			}
		})
	}
}

func TestNewArtifactJobAsync(t *testing.T) {
	for _, query := range []string{"?async", "?async=0", "?async=false", "?x=1&async="} {
		sub := &submitter{res: mixmaster.ArtifactResult{Job: artifactJob(9, mixmaster.StatusQueued)}}
		e, _ := newEcho(t, &Handler{Artifacts: sub.fake()})
		rec := serve(e, http.MethodPost, "/jobs"+query, `{"project":"ok"}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("%s: status = %d: %s", query, rec.Code, rec.Body.String())
		}
		if sub.waited() != 0 {
			t.Errorf("%s: waited", query)
		}
		var bi BuildInfo
		if err := json.Unmarshal(rec.Body.Bytes(), &bi); err != nil {
			t.Fatal(err)
		}
		if bi.ExitCode != -999 || bi.Duration != -time.Second || bi.URL != "job/ok/9" || bi.Path != "/srv/builds/ok/ready/9/data/artifacts" {
			t.Errorf("%s: BuildInfo = %+v", query, bi)
		}
	}
}

func TestNewArtifactJobOutcomes(t *testing.T) {
	for _, tc := range []struct {
		status   mixmaster.Status
		exitCode int
		errBuild string
	}{
		{mixmaster.StatusFailed, 3, ""},
		// The image did not build: still a 201, so that the client shows
		// the error and exits 1.
		{mixmaster.StatusErrored, -999, "could not build docker image: unknown instruction: INVALIDCOMMAND"},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			_, logs := logDir(t)
			sub := &submitter{res: mixmaster.ArtifactResult{Job: artifactJob(4, mixmaster.StatusQueued)}, done: artifactJob(4, tc.status)}
			if tc.status == mixmaster.StatusErrored {
				sub.done.StartedAt = time.Time{} // never ran
			}
			e, _ := newEcho(t, &Handler{Artifacts: sub.fake(), Logs: logs})
			rec := serve(e, http.MethodPost, "/jobs", `{"project":"ok"}`)
			if rec.Code != http.StatusCreated {
				t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
			}
			var bi BuildInfo
			if err := json.Unmarshal(rec.Body.Bytes(), &bi); err != nil {
				t.Fatal(err)
			}
			if bi.ExitCode != tc.exitCode || bi.ErrBuild != tc.errBuild {
				t.Errorf("ExitCode %d ErrBuild %q, want %d %q", bi.ExitCode, bi.ErrBuild, tc.exitCode, tc.errBuild)
			}
			if tc.status == mixmaster.StatusErrored && bi.Duration != -time.Second {
				t.Errorf("Duration = %v, want -1s", bi.Duration)
			}
		})
	}
}

// A client that hangs up while waiting stops the wait, not the build.
func TestNewArtifactJobClientGone(t *testing.T) {
	sub := &submitter{res: mixmaster.ArtifactResult{Job: artifactJob(4, mixmaster.StatusQueued)}}
	e, logs := newEcho(t, &Handler{Artifacts: sub.fake()})
	ctx, cancel := context.WithCancel(t.Context())
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/jobs", strings.NewReader(`{"project":"ok"}`))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.ServeHTTP(httptest.NewRecorder(), req)
	}()
	waitFor(t, "wait", func() bool { return sub.waited() == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still waits")
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a departed client was logged as an error: %s", logs.String())
	}
}

func TestNoArtifactsNoJobsRoute(t *testing.T) {
	e, _ := newEcho(t, &Handler{})
	if rec := serve(e, http.MethodPost, "/jobs", `{"project":"ok"}`); rec.Code != http.StatusNotFound {
		t.Errorf("status = %d", rec.Code)
	}
}

func TestLogTail(t *testing.T) {
	dir, logs := logDir(t)
	appendFile(t, filepath.Join(dir, "1.log"), "first line\nsecond\nthird\n")
	h := &Handler{Logs: logs}
	for _, tc := range []struct {
		limit int64
		want  string
	}{
		{100, "first line\nsecond\nthird\n"},
		{25, "first line\nsecond\nthird\n"},
		{24, "first line\nsecond\nthird\n"},
		{13, "second\nthird\n"}, // the cut falls just before "second"
		{12, "third\n"},         // the cut falls inside "second"
		{6, "third\n"},
		{5, ""},
	} {
		got, err := h.logTail(1, tc.limit)
		if err != nil || got != tc.want {
			t.Errorf("logTail(%d) = %q, %v; want %q", tc.limit, got, err, tc.want)
		}
	}
	if got, err := h.logTail(2, 100); got != "" || err != nil {
		t.Errorf("no log: %q, %v", got, err)
	}
}

func TestStderrText(t *testing.T) {
	log := "2026-11-21T00:46:56.295Z ! one\n" +
		"2026-11-21T00:46:56.295Z O out\n" +
		"2026-11-21T00:46:56.295Z !\n" +
		"2026-11-21T00:46:56.295Z !  indented\n" +
		"! short\n" +
		"2026-11-21T00:46:56.295Z ! last, no newline"
	want := "one\n\n indented\nlast, no newline\n"
	if got := stderrText(log); got != want {
		t.Errorf("stderrText = %q, want %q", got, want)
	}
	// One stream for both: the whole output is the error log.
	merged := "2026-11-21T00:46:56.295Z # Build started\n" +
		"2026-11-21T00:46:56.295Z O this is stdout\n" +
		"2026-11-21T00:46:56.295Z O sh: missing_command: not found\n"
	if got, want := stderrText(merged), "this is stdout\nsh: missing_command: not found\n"; got != want {
		t.Errorf("stderrText of a merged stream = %q, want %q", got, want)
	}
}

func TestIndex(t *testing.T) {
	store := &memStore{}
	store.put(artifactJob(1, mixmaster.StatusSucceeded))
	store.put(&mixmaster.Job{ID: 2, Kind: mixmaster.KindWebhook, Project: "org/repo", Status: mixmaster.StatusRunning, QueuedAt: queuedAt})
	store.put(artifactJob(3, mixmaster.StatusRunning))
	failed := artifactJob(4, mixmaster.StatusFailed)
	failed.Params = nil
	store.put(failed)
	dir, logs := logDir(t)
	appendFile(t, filepath.Join(dir, "1.log"), buildLog)
	e, _ := newEcho(t, &Handler{Jobs: store.fake(), Logs: logs, Artifacts: (&submitter{}).fake()})

	rec := serve(e, http.MethodGet, "/index/", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 3 {
		t.Fatalf("%d entries, want the 3 artifact jobs: %s", len(raw), rec.Body.String())
	}
	for _, r := range raw {
		if got, want := keys(t, r), []string{"id", "project", "startedAt", "buildInfo", "state"}; !slices.Equal(got, want) {
			t.Errorf("keys = %q, want %q", got, want)
		}
	}
	var list []struct {
		ID, Project, StartedAt, State string
		BuildInfo                     json.RawMessage
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range list {
		got = append(got, l.ID+" "+l.Project+" "+l.State)
		if want := queuedAt.Local().Format("Mon, 02 Jan 2006 15:04:05"); l.StartedAt != want {
			t.Errorf("startedAt = %q, want %q", l.StartedAt, want)
		}
		// The list leaves logs out.
		if k := keys(t, l.BuildInfo); !slices.Equal(k, without(buildInfoKeys, "ContainerStdouterr", "ContainerStderr")) {
			t.Errorf("buildInfo keys = %q", k)
		}
	}
	if want := []string{"4 ok ready", "3 ok pending", "1 ok ready"}; !slices.Equal(got, want) {
		t.Errorf("index = %q, want %q", got, want)
	}
	if !strings.Contains(string(list[0].BuildInfo), `"Params":null`) || !strings.Contains(string(list[0].BuildInfo), `"ExitCode":3`) {
		t.Errorf("buildInfo = %s", list[0].BuildInfo)
	}

	// Every path below /index/ lists the same, as in mistry.
	if rec := serve(e, http.MethodGet, "/index/anything", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"state":"ready"`) {
		t.Errorf("/index/anything: %d %s", rec.Code, rec.Body.String())
	}
}

func TestIndexEmptyAndPaged(t *testing.T) {
	store := &memStore{}
	e, _ := newEcho(t, &Handler{Jobs: store.fake()})
	if rec := serve(e, http.MethodGet, "/index/", ""); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("empty: %d %q", rec.Code, rec.Body.String())
	}

	// An artifact job behind more than a page of webhook jobs is found.
	store.put(artifactJob(1, mixmaster.StatusSucceeded))
	for id := mixmaster.JobID(2); id <= maxPageSize+10; id++ {
		store.put(&mixmaster.Job{ID: id, Kind: mixmaster.KindWebhook, Project: "org/repo", Status: mixmaster.StatusSucceeded})
	}
	rec := serve(e, http.MethodGet, "/index/", "")
	var list []indexEntry
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "1" {
		t.Errorf("index = %+v", list)
	}
}

func TestIndexRedirect(t *testing.T) {
	e, _ := newEcho(t, &Handler{Jobs: (&memStore{}).fake()})
	rec := serve(e, http.MethodGet, "/index", "")
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/index/" {
		t.Errorf("got %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
}

func TestShowJobJSON(t *testing.T) {
	store := &memStore{}
	store.put(artifactJob(7, mixmaster.StatusSucceeded))
	store.put(artifactJob(8, mixmaster.StatusRunning))
	dir, logs := logDir(t)
	appendFile(t, filepath.Join(dir, "7.log"), buildLog)
	e, _ := newEcho(t, &Handler{Jobs: store.fake(), Logs: logs, Artifacts: (&submitter{}).fake()})

	for _, header := range []string{"Content-Type", "Accept"} {
		rec := serve(e, http.MethodGet, "/job/ok/7", "", header, "application/json")
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status = %d: %s", header, rec.Code, rec.Body.String())
		}
		if !strings.Contains(rec.Body.String(), `"ID":"7"`) {
			t.Errorf("%s: body lacks \"ID\":\"7\": %s", header, rec.Body.String())
		}
		var v struct {
			ID, Project, State string
			BuildInfo          BuildInfo
			Job                mixmaster.Job
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if v.Project != "ok" || v.State != "ready" || v.BuildInfo.ContainerStdouterr != buildLog || v.Job.ID != 7 || v.BuildInfo.Path == "" {
			t.Errorf("%s: %+v", header, v)
		}
	}

	rec := serve(e, http.MethodGet, "/job/ok/8", "", "Content-Type", "application/json; charset=utf-8")
	if !strings.Contains(rec.Body.String(), `"State":"pending"`) {
		t.Errorf("running job: %s", rec.Body.String())
	}
}

func TestShowJobHTML(t *testing.T) {
	store := &memStore{}
	j := artifactJob(7, mixmaster.StatusFailed)
	j.Params = map[string]string{"<b>k</b>": "<i>v</i>"}
	store.put(j)
	dir, logs := logDir(t)
	appendFile(t, filepath.Join(dir, "7.log"), "2026-11-21T00:46:56.300Z O <script>alert(1)</script>\n")
	e, _ := newEcho(t, &Handler{Jobs: store.fake(), Logs: logs, Artifacts: (&submitter{}).fake()})

	rec := serve(e, http.MethodGet, "/job/ok/7", "", "Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q", ct)
	}
	body := rec.Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>k") || strings.Contains(body, "<i>v") {
		t.Errorf("unescaped output in the page:\n%s", body)
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "Job 7", "/srv/builds/ok/ready/7/data/artifacts", ">3<"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

func TestShowJobPageHook(t *testing.T) {
	store := &memStore{}
	store.put(artifactJob(7, mixmaster.StatusSucceeded))
	var got *mixmaster.Job
	h := &Handler{Jobs: store.fake(), JobPage: func(c echo.Context, job *mixmaster.Job) error {
		got = job
		return c.HTML(http.StatusOK, "dashboard")
	}}
	e, _ := newEcho(t, h)
	rec := serve(e, http.MethodGet, "/job/ok/7", "")
	if rec.Body.String() != "dashboard" || got == nil || got.ID != 7 {
		t.Errorf("got %q, job %+v", rec.Body.String(), got)
	}
}

func TestShowJobNotFound(t *testing.T) {
	store := &memStore{}
	store.put(artifactJob(7, mixmaster.StatusSucceeded))
	store.put(&mixmaster.Job{ID: 12, Kind: mixmaster.KindWebhook, Project: "org/repo", Status: mixmaster.StatusSucceeded})
	_, logs := logDir(t)
	e, _ := newEcho(t, &Handler{Jobs: store.fake(), Logs: logs})
	for _, path := range []string{
		"/job/other/7", "/job/ok/8", "/job/ok/x", "/job/ok/0", "/job/ok/-1", "/job/7", "/job/", "/job/ok/7/",
		"/job/ok/99999999999999999999999", "/job/org/7", "/job/repo/12", "/job/org/repo/extra/12", "/job//12",
	} {
		rec := serve(e, http.MethodGet, path, "")
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: status = %d, want 404", path, rec.Code)
		}
	}

	// A webhook project's owner/name keeps its slash.
	rec := serve(e, http.MethodGet, "/job/org/repo/12", "", "Content-Type", "application/json")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ID":"12"`) || !strings.Contains(rec.Body.String(), `"Project":"org/repo"`) {
		t.Errorf("webhook job: %d %s", rec.Code, rec.Body.String())
	}
	if rec := serve(e, http.MethodGet, "/job/org%2Frepo/12", "", "Accept", "application/json"); rec.Code != http.StatusOK {
		t.Errorf("escaped slash: %d %s", rec.Code, rec.Body.String())
	}
}

func TestShowJobStoreError(t *testing.T) {
	store := &fakeJobStore{JobFn: func(context.Context, mixmaster.JobID) (*mixmaster.Job, error) {
		return nil, errors.New("disk on fire")
	}}
	e, _ := newEcho(t, &Handler{Jobs: store})
	if rec := serve(e, http.MethodGet, "/job/ok/1", ""); rec.Code != http.StatusInternalServerError {
		t.Errorf("status = %d", rec.Code)
	}
}
