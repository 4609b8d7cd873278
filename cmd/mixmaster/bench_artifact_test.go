package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkArtifactCacheHit measures POST /jobs answered from the result
// cache, for project folders of 1 MB and 200 MB. The folder's content hash
// is cached, so a hit only walks the folder's metadata; the target is a
// p50 under 2 ms for both sizes.
func BenchmarkArtifactCacheHit(b *testing.B) {
	for _, size := range []struct {
		name  string
		files int
		each  int
	}{{"1MB", 16, 64 << 10}, {"200MB", 50, 4 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			projects := b.TempDir()
			dir := filepath.Join(projects, "assets")
			os.MkdirAll(filepath.Join(dir, "vendor"), 0o755)
			os.WriteFile(filepath.Join(dir, "build"), []byte("#!/bin/sh\necho built > artifacts/out.txt\n"), 0o755)
			chunk := make([]byte, size.each)
			for i := range size.files {
				rand.Read(chunk)
				os.WriteFile(filepath.Join(dir, "vendor", fmt.Sprintf("blob-%03d", i)), chunk, 0o644)
			}
			s := startServer(b, "[_]\nbuildRoot = @ROOT@/builds\nprojectsPath = "+projects+"\n")
			body := []byte(`{"Project": "assets", "Params": {"revision": "abc123"}, "Group": "bench"}`)
			post := func() []byte {
				resp, err := http.Post(s.URL+"/jobs", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				reply, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatalf("POST /jobs: %d %s", resp.StatusCode, reply)
				}
				return reply
			}
			post() // the build itself, and the first hash of the folder
			if !bytes.Contains(post(), []byte(`"Cached":true`)) {
				b.Fatal("the repeat was not served from the cache")
			}
			latencies := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				post()
				latencies = append(latencies, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkArtifactCoalescing sends 100 identical requests at once and
// reports how many builds they caused (the target: one).
func BenchmarkArtifactCoalescing(b *testing.B) {
	projects := b.TempDir()
	dir := filepath.Join(projects, "slow")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "build"), []byte("#!/bin/sh\nsleep 1\necho built > artifacts/out.txt\n"), 0o755)
	s := startServer(b, "[_]\nbuildRoot = @ROOT@/builds\nprojectsPath = "+projects+"\njobBacklog = 1000\n")
	transport := &http.Transport{MaxIdleConnsPerHost: 100}
	client := &http.Client{Transport: transport}
	b.Cleanup(transport.CloseIdleConnections)
	round := 0
	for b.Loop() {
		round++
		body := fmt.Sprintf(`{"Project": "slow", "Params": {"round": "%d"}}`, round)
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Post(s.URL+"/jobs", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("POST /jobs: %d", resp.StatusCode)
				}
			}()
		}
		wg.Wait()
	}
	n, err := s.DB.CountJobs(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/float64(round), "builds/100-requests")
}
