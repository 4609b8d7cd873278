package main

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBacklogRefusalOnlyForJobs answers every request with the backlog's
// 503: for POST /jobs that is the back-pressure the load may provoke, for a
// webhook it is a refused build and fails the run.
func TestBacklogRefusalOnlyForJobs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"build queue is full (4 jobs waiting); try again later"}`))
	}))
	defer srv.Close()
	l := &loader{base: srv.URL, client: srv.Client()}
	r := rand.New(rand.NewPCG(1, 1))

	var res results
	l.do(kindArtifact, r, &res.kinds[kindArtifact])
	if p := res.problems(); len(p) != 0 || res.kinds[kindArtifact].busy != 1 {
		t.Errorf("a full backlog for POST /jobs: problems %q, busy %d", p, res.kinds[kindArtifact].busy)
	}

	l.do(kindWebhook, r, &res.kinds[kindWebhook])
	p := res.problems()
	if len(p) != 1 || !strings.Contains(p[0], "webhook") || !strings.Contains(p[0], "queue is full") {
		t.Errorf("a refused webhook: problems %q, want one naming the webhook", p)
	}
}
