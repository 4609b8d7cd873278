package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"mixmaster"
)

// jobsUpTo returns jobs n, n-1, … 1: a store's newest-first order.
func jobsUpTo(n int) []*mixmaster.Job {
	var jobs []*mixmaster.Job
	for i := n; i >= 1; i-- {
		jobs = append(jobs, &mixmaster.Job{ID: mixmaster.JobID(i), Project: "p", Status: mixmaster.StatusSucceeded})
	}
	return jobs
}

func TestListJobs(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		wantFilter  mixmaster.JobFilter
		stored      int
		wantIDs     int
		wantNext    mixmaster.JobID
	}{
		{"defaults", "", mixmaster.JobFilter{Limit: 50}, 3, 3, 0},
		{"all filters", "?project=test-org%2Ftest-repo&status=failed&before=90&limit=2",
			mixmaster.JobFilter{Project: "test-org/test-repo", Status: mixmaster.StatusFailed, Before: 90, Limit: 2}, 2, 2, 1},
		{"full page has next", "?limit=3", mixmaster.JobFilter{Limit: 3}, 3, 3, 1},
		{"empty", "?status=queued", mixmaster.JobFilter{Status: mixmaster.StatusQueued, Limit: 50}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got mixmaster.JobFilter
			store := &fakeJobStore{JobsFn: func(_ context.Context, f mixmaster.JobFilter) ([]*mixmaster.Job, error) {
				got = f
				if tc.stored == 0 {
					return nil, nil
				}
				return jobsUpTo(tc.stored), nil
			}}
			e, _ := newEcho(t, &Handler{Jobs: store})

			rec := serve(e, http.MethodGet, "/api/v1/jobs"+tc.query, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
			}
			if got != tc.wantFilter {
				t.Errorf("filter = %+v, want %+v", got, tc.wantFilter)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			var page jobList
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
				t.Fatal(err)
			}
			if string(raw["jobs"]) == "null" || len(page.Jobs) != tc.wantIDs {
				t.Errorf("jobs = %s, want %d", raw["jobs"], tc.wantIDs)
			}
			if _, has := raw["next"]; has != (tc.wantNext != 0) || page.Next != tc.wantNext {
				t.Errorf("next = %s, want %d", raw["next"], tc.wantNext)
			}
		})
	}
}

func TestListJobsBadQuery(t *testing.T) {
	store := &fakeJobStore{JobsFn: func(context.Context, mixmaster.JobFilter) ([]*mixmaster.Job, error) {
		t.Error("Jobs called for a bad query")
		return nil, nil
	}}
	e, _ := newEcho(t, &Handler{Jobs: store})
	for _, q := range []string{
		"status=done", "status=QUEUED", "limit=0", "limit=-1", "limit=501", "limit=ten",
		"before=0", "before=-5", "before=x",
	} {
		t.Run(q, func(t *testing.T) {
			wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs?"+q, ""), http.StatusBadRequest, "")
		})
	}
}

func TestGetJob(t *testing.T) {
	code := 3
	store := &fakeJobStore{JobFn: func(_ context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
		if id != 5 {
			return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "Job %d not found.", id)
		}
		return &mixmaster.Job{ID: 5, Kind: mixmaster.KindWebhook, Project: "p", Status: mixmaster.StatusFailed,
			ExitCode: &code, QueuedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, nil
	}}
	e, _ := newEcho(t, &Handler{Jobs: store})

	rec := serve(e, http.MethodGet, "/api/v1/jobs/5", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d: %s", rec.Code, rec.Body.String())
	}
	var job map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &job); err != nil {
		t.Fatal(err)
	}
	if job["id"] != 5.0 || job["status"] != "failed" || job["exitCode"] != 3.0 {
		t.Errorf("job = %v", job)
	}

	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs/6", ""), http.StatusNotFound, "Job 6 not found.")
	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs/abc", ""), http.StatusBadRequest, "Invalid job id 'abc'.")
	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs/0", ""), http.StatusBadRequest, "")
	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs/99999999999999999999999", ""), http.StatusBadRequest, "")
}

func TestCancelJob(t *testing.T) {
	canceler := &fakeCanceler{CancelFn: func(_ context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
		switch id {
		case 1: // queued: canceled at once
			return &mixmaster.Job{ID: 1, Status: mixmaster.StatusCanceled, Error: "canceled"}, nil
		case 2: // running: the runner stops it
			return &mixmaster.Job{ID: 2, Status: mixmaster.StatusRunning}, nil
		case 3:
			return nil, mixmaster.Errorf(mixmaster.ECONFLICT, "Job 3 has already finished.")
		}
		return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "Job %d not found.", id)
	}}
	e, _ := newEcho(t, &Handler{Canceler: canceler})

	for _, tc := range []struct {
		id         string
		status     int
		wantStatus mixmaster.Status
	}{
		{"1", http.StatusOK, mixmaster.StatusCanceled},
		{"2", http.StatusAccepted, mixmaster.StatusRunning},
	} {
		rec := serve(e, http.MethodPost, "/api/v1/jobs/"+tc.id+"/cancel", "")
		var job mixmaster.Job
		if err := json.Unmarshal(rec.Body.Bytes(), &job); err != nil {
			t.Fatalf("job %s: %v (%q)", tc.id, err, rec.Body.String())
		}
		if rec.Code != tc.status || job.Status != tc.wantStatus {
			t.Errorf("job %s: %d %s, want %d %s", tc.id, rec.Code, job.Status, tc.status, tc.wantStatus)
		}
	}
	wantJSONError(t, serve(e, http.MethodPost, "/api/v1/jobs/3/cancel", ""), http.StatusConflict, "Job 3 has already finished.")
	wantJSONError(t, serve(e, http.MethodPost, "/api/v1/jobs/4/cancel", ""), http.StatusNotFound, "Job 4 not found.")
	wantJSONError(t, serve(e, http.MethodPost, "/api/v1/jobs/x/cancel", ""), http.StatusBadRequest, "")
	wantJSONError(t, serve(e, http.MethodGet, "/api/v1/jobs/1/cancel", ""), http.StatusMethodNotAllowed, "")
}

func TestStoreErrorIsInternal(t *testing.T) {
	store := &fakeJobStore{JobsFn: func(context.Context, mixmaster.JobFilter) ([]*mixmaster.Job, error) {
		return nil, fmt.Errorf("list jobs: %w", errors.New("bbolt: database not open"))
	}}
	e, logs := newEcho(t, &Handler{Jobs: store})
	rec := serve(e, http.MethodGet, "/api/v1/jobs", "")
	wantJSONError(t, rec, http.StatusInternalServerError, "Internal error.")
	if !strings.Contains(logs.String(), "database not open") {
		t.Errorf("not logged: %s", logs.String())
	}
}
