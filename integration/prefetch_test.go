package integration

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// A mount fetches the prioritized files of an eStargz layer (those before
// .prefetch.landmark) in the background once it is ready, and reads of
// them then find the data cached.
func TestMountPrefetchesLandmarkFiles(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	hot := bytes.Repeat([]byte("prioritized "), 50_000)
	layer := MustLayer(t, LayerSpec{
		Compression: Estargz,
		Entries: []Entry{
			Dir("app"),
			File("app/start.sh", string(hot)),
			File("app/cold.dat", strings.Repeat("c", 100_000)),
		},
		EstargzPrioritized: []string{"app/start.sh"},
	})
	img := MustImage(t, ImageSpec{Kind: OCI, Platform: LinuxAMD64, Layers: []*BuiltLayer{layer}})
	ref := reg.PushImage(t, "prefetch/landmark", "v1", img)

	m := mountImage(t, ref, mountOptions{Args: []string{"--debug"}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, _ := os.ReadFile(m.LogPath)
		if strings.Contains(string(log), "prefetched prioritized files") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no landmark prefetch within 30 s; server log:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, err := os.ReadFile(m.path("app/start.sh"))
	if err != nil || !bytes.Equal(got, hot) {
		t.Fatalf("prioritized file through the mount: %v (equal %v)", err, bytes.Equal(got, hot))
	}
}
