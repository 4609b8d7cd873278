package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
)

// BusyboxTag is the local base image that BusyboxImage makes. No registry
// is reachable in CI, so Docker tests build everything on top of it.
const BusyboxTag = "mixmaster-test/busybox:latest"

// hostBusybox is where Debian's busybox-static puts its binary.
const hostBusybox = "/bin/busybox"

// busyboxApplets are the commands the image offers, as symlinks to busybox
// in /bin: what the executor suites and test Dockerfiles use.
var busyboxApplets = []string{
	"sh", "sleep", "cat", "echo", "touch", "ls", "env", "id", "mkdir", "rm",
	"stat", "date", "printf", "grep", "seq", "head", "true", "false", "kill", "ps",
}

var (
	dockerOnce sync.Once
	dockerCli  *client.Client
	dockerErr  error

	busyboxOnce sync.Once
	busyboxErr  error
	// busyboxMissing is set when the host has no static busybox, which is
	// a missing engine rather than a broken test.
	busyboxMissing bool
)

// DockerClient returns a client for the Docker engine named by the
// environment (DOCKER_HOST and friends), shared by the whole test process.
// It skips the test, or fails it when MIXMASTER_TEST_REQUIRE names docker,
// if the engine does not answer a ping.
func DockerClient(t testing.TB) *client.Client {
	t.Helper()
	dockerOnce.Do(func() {
		dockerCli, dockerErr = client.New(client.FromEnv)
		if dockerErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := dockerCli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
			dockerCli.Close()
			dockerCli, dockerErr = nil, err
		}
	})
	why := ""
	if dockerErr != nil {
		why = dockerErr.Error()
	}
	Need(t, "docker", dockerErr == nil, why)
	return dockerCli
}

// BusyboxImage returns BusyboxTag after making sure the image exists. The
// first call in a process imports it when missing: a root file system with
// the host's static busybox, symlinks for the common applets, /tmp (1777),
// /data and PATH=/bin. It is safe for concurrent use. Like DockerClient it
// skips or fails the test when the engine or a static busybox is missing.
func BusyboxImage(t testing.TB) string {
	t.Helper()
	cli := DockerClient(t)
	busyboxOnce.Do(func() {
		busyboxErr = ensureBusybox(cli)
	})
	if busyboxMissing {
		Need(t, "docker", false, busyboxErr.Error())
	}
	if busyboxErr != nil {
		t.Fatalf("busybox base image: %v", busyboxErr)
	}
	return BusyboxTag
}

func ensureBusybox(cli *client.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Another test process (go test ./... runs packages in parallel) may
	// have made it already; the image outlives the process on purpose.
	if _, err := cli.ImageInspect(ctx, BusyboxTag); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return err
	}
	if err := checkStatic(hostBusybox); err != nil {
		busyboxMissing = true
		return err
	}
	rootfs, err := busyboxRootfs(hostBusybox)
	if err != nil {
		return err
	}
	res, err := cli.ImageImport(ctx,
		client.ImageImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"},
		BusyboxTag,
		client.ImageImportOptions{Changes: []string{"ENV PATH=/bin"}, Message: "mixmaster test base image"})
	if err != nil {
		return fmt.Errorf("import %s: %w", BusyboxTag, err)
	}
	defer res.Close()
	var progress bytes.Buffer
	if err := jsonmessage.DisplayJSONMessagesStream(res, &progress, 0, false, nil); err != nil {
		return fmt.Errorf("import %s: %w", BusyboxTag, err)
	}
	return nil
}

// checkStatic makes sure the busybox to copy runs without the host's
// dynamic loader and libraries, which the image does not have.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("no usable busybox (install busybox-static): %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (install busybox-static)", path)
		}
	}
	return nil
}

// busyboxRootfs returns the image's root file system as a tar archive. It
// is about 2 MB, so building it in memory is fine.
func busyboxRootfs(path string) ([]byte, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// A fixed time keeps the layer the same from one import to the next.
	mtime := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: mtime})
	}
	var errs []error
	errs = append(errs,
		dir("bin/", 0o755),
		dir("data/", 0o755),
		dir("tmp/", 0o1777),
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin)), ModTime: mtime}),
	)
	_, err = tw.Write(bin)
	errs = append(errs, err)
	for _, name := range busyboxApplets {
		errs = append(errs, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + name, Linkname: "busybox", Mode: 0o777, ModTime: mtime}))
	}
	errs = append(errs, tw.Close())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
