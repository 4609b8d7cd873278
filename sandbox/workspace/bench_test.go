package workspace

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"mixmaster"
	"mixmaster/internal/testenv"
)

// The target: a build starts from a snapshot of its group's last build,
// 1 GiB of cache included, in under 100 ms.
const (
	benchFiles    = 64
	benchFileSize = 16 << 20 // 64 × 16 MiB = 1 GiB
)

func BenchmarkCloneBtrfs(b *testing.B) {
	// Room for the data set and the copy-on-write churn around it.
	benchmarkClone(b, Btrfs{}, testenv.BtrfsMountSize(b, 3<<30), benchFiles)
}

// BenchmarkClonePlain copies the data for real, as cp cannot make
// reflinks on ext4. It uses a quarter of the data set: a full gigabyte
// takes seconds per copy on a disk like CI's (about 7 s, 145 MB/s), which
// only makes the benchmark slow; MB/s compares.
func BenchmarkClonePlain(b *testing.B) {
	benchmarkClone(b, Plain{}, b.TempDir(), benchFiles/4)
}

// BenchmarkClonePlainReflink is Plain on btrfs, where cp --reflink=auto
// shares the data instead of copying it.
func BenchmarkClonePlainReflink(b *testing.B) {
	benchmarkClone(b, Plain{}, testenv.BtrfsMountSize(b, 3<<30), benchFiles)
}

// benchmarkClone measures Clone of a workspace holding a cache directory
// of files × 16 MiB. The data is synced before the clock starts: otherwise the
// first btrfs snapshot would also pay for writing it out.
func benchmarkClone(b *testing.B, ws mixmaster.Workspaces, dir string, files int) {
	ctx := b.Context()
	src := filepath.Join(dir, "src")
	if err := ws.Create(ctx, src); err != nil {
		b.Fatal(err)
	}
	cache := filepath.Join(src, "cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, benchFileSize)
	for i := range files {
		// Random data, so that no compression or deduplication can
		// make the copy cheaper than it is.
		rand.NewChaCha8([32]byte{byte(i)}).Read(buf)
		if err := os.WriteFile(filepath.Join(cache, fmt.Sprintf("blob%02d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	syscall.Sync()
	b.SetBytes(int64(files) * benchFileSize)

	i := 0
	for b.Loop() {
		dst := filepath.Join(dir, fmt.Sprint("dst", i))
		i++
		if err := ws.Clone(ctx, src, dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := ws.Remove(ctx, dst); err != nil {
			b.Fatal(err)
		}
		syscall.Sync()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}
