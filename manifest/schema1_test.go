package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/fetch"
)

type testFSLayer struct {
	BlobSum string `json:"blobSum"`
}

type testHistory struct {
	V1Compatibility string `json:"v1Compatibility"`
}

// testSchema1 has the key order Docker writes.
type testSchema1 struct {
	SchemaVersion int           `json:"schemaVersion"`
	Name          string        `json:"name"`
	Tag           string        `json:"tag"`
	Architecture  string        `json:"architecture"`
	FSLayers      []testFSLayer `json:"fsLayers"`
	History       []testHistory `json:"history"`
}

// signLikeLibtrust turns a manifest into libtrust's "pretty JWS" form:
// the indented payload minus its closing "\n}", a "signatures" key, and the
// cut recorded in each signature's protected header. It returns the signed
// body and the payload (what the digest is over).
func signLikeLibtrust(t testing.TB, v any, signatures int) (body, payload []byte) {
	t.Helper()
	payload = mustJSON(t, v) // json.MarshalIndent(v, "", "   "), as libtrust
	formatLength := len(payload) - 2
	tail := payload[formatLength:]
	protected, err := json.Marshal(map[string]any{
		"formatLength": formatLength,
		"formatTail":   base64.RawURLEncoding.EncodeToString(tail),
		"time":         "2016-06-13T16:28:35Z",
	})
	if err != nil {
		t.Fatal(err)
	}
	var sigs []map[string]any
	for i := 0; i < signatures; i++ {
		sigs = append(sigs, map[string]any{
			"header":    map[string]any{"jwk": map[string]string{"crv": "P-256", "kid": fmt.Sprintf("KEY%d", i), "kty": "EC"}, "alg": "ES256"},
			"signature": "c2lnbmF0dXJl",
			"protected": base64.RawURLEncoding.EncodeToString(protected),
		})
	}
	marshalled, err := json.MarshalIndent(sigs, "   ", "   ")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(payload[:formatLength])
	buf.WriteString(",\n   \"signatures\": ")
	buf.Write(marshalled)
	buf.WriteString("\n}")
	return buf.Bytes(), payload
}

func v1compat(t testing.TB, m map[string]any) testHistory {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return testHistory{V1Compatibility: string(b)}
}

// schema1Fixture has five fsLayers, newest first; entries 0 and 2 are
// throwaway (ENV and LABEL-like instructions).
func schema1Fixture(t testing.TB) (testSchema1, []digest.Digest) {
	blob := func(i int) digest.Digest { return digest.FromString(fmt.Sprintf("layer-%d", i)) }
	m := testSchema1{SchemaVersion: 1, Name: "ns/old", Tag: "v1", Architecture: "amd64"}
	for i := 4; i >= 0; i-- { // newest (4) first
		m.FSLayers = append(m.FSLayers, testFSLayer{BlobSum: blob(i).String()})
	}
	m.History = []testHistory{
		v1compat(t, map[string]any{
			"id": "4", "parent": "3", "created": "2016-06-13T11:41:24.936334311Z", "os": "linux", "architecture": "amd64",
			"throwaway": true, "author": "someone",
			"config": map[string]any{
				"Env":          []string{"PATH=/usr/bin:/bin", "x=a"},
				"Cmd":          []string{"/bin/sh", "-c", "echo hi"},
				"Entrypoint":   "/entry.sh", // old Docker wrote a bare string
				"Labels":       map[string]string{"org.example": "yes"},
				"WorkingDir":   "/work",
				"User":         "1000:1000",
				"ExposedPorts": map[string]any{"80/tcp": map[string]any{}},
				"Volumes":      map[string]any{"/data": map[string]any{}},
			},
			"container_config": map[string]any{"Cmd": []string{"/bin/sh", "-c", "#(nop) ENV x=a"}},
		}),
		v1compat(t, map[string]any{"id": "3", "parent": "2", "created": "2016-06-13T11:41:20Z"}),
		v1compat(t, map[string]any{"id": "2", "parent": "1", "throwaway": true}),
		v1compat(t, map[string]any{"id": "1", "parent": "0"}),
		v1compat(t, map[string]any{"id": "0", "created": "not a time"}),
	}
	return m, []digest.Digest{blob(0), blob(1), blob(3)} // base-first, without throwaways
}

func TestResolveSchema1Signed(t *testing.T) {
	m, wantLayers := schema1Fixture(t)
	body, payload := signLikeLibtrust(t, m, 2)
	payloadDigest, rawDigest := digest.FromBytes(payload), digest.FromBytes(body)

	src := newFakeSource()
	resp := fetch.ManifestResponse{Body: body, MediaType: MediaTypeDockerSchema1Signed, DockerContentDigest: payloadDigest}
	src.manifests["v1"] = resp
	src.manifests[payloadDigest.String()] = resp
	src.manifests[rawDigest.String()] = resp

	for _, ref := range []string{"127.0.0.1:5000/ns/old:v1", "127.0.0.1:5000/ns/old@" + payloadDigest.String(), "127.0.0.1:5000/ns/old@" + rawDigest.String()} {
		t.Run(ref, func(t *testing.T) {
			img, err := resolveWith(t, src, ref, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			wantDigest := payloadDigest
			if strings.Contains(ref, rawDigest.String()) {
				wantDigest = rawDigest
			}
			if img.Digest != wantDigest || img.MediaType != MediaTypeDockerSchema1Signed || img.SchemaVersion != 1 {
				t.Errorf("digest %s type %s v%d, want %s", img.Digest, img.MediaType, img.SchemaVersion, wantDigest)
			}
			var got []digest.Digest
			for _, l := range img.Layers {
				got = append(got, l.Digest)
				if l.Size != -1 || l.Format != FormatGzip || l.MediaType != schema1LayerMediaType {
					t.Errorf("layer %+v", l)
				}
			}
			if !slices.Equal(got, wantLayers) {
				t.Errorf("layers %v\nwant   %v", got, wantLayers)
			}
			c := img.Config
			if !slices.Equal(c.Config.Env, []string{"PATH=/usr/bin:/bin", "x=a"}) ||
				!slices.Equal(c.Config.Cmd, []string{"/bin/sh", "-c", "echo hi"}) ||
				!slices.Equal(c.Config.Entrypoint, []string{"/entry.sh"}) ||
				c.Config.Labels["org.example"] != "yes" || c.Config.WorkingDir != "/work" || c.Config.User != "1000:1000" {
				t.Errorf("config %+v", c.Config)
			}
			if _, ok := c.Config.ExposedPorts["80/tcp"]; !ok {
				t.Errorf("exposed ports %v", c.Config.ExposedPorts)
			}
			if _, ok := c.Config.Volumes["/data"]; !ok {
				t.Errorf("volumes %v", c.Config.Volumes)
			}
			if c.Created == nil || c.Created.Format("2006-01-02T15:04:05.999999999Z") != "2016-06-13T11:41:24.936334311Z" {
				t.Errorf("created %v", c.Created)
			}
			if c.OS != "linux" || c.Architecture != "amd64" || FormatPlatform(img.Platform) != "linux/amd64" || c.Author != "someone" {
				t.Errorf("platform %s/%s author %q", c.OS, c.Architecture, c.Author)
			}
			if len(c.History) != 5 || !c.History[2].EmptyLayer || !c.History[4].EmptyLayer || c.History[0].EmptyLayer ||
				c.History[4].CreatedBy != "/bin/sh -c #(nop) ENV x=a" {
				t.Errorf("history %+v", c.History)
			}
			if img.ConfigDigest != "" || img.Size() != -1 {
				t.Errorf("config digest %q size %d", img.ConfigDigest, img.Size())
			}
		})
	}

	t.Run("Docker-Content-Digest mismatch", func(t *testing.T) {
		bad := newFakeSource()
		r := resp
		r.DockerContentDigest = digest.FromString("x")
		bad.manifests["v1"] = r
		if _, err := resolveWith(t, bad, "127.0.0.1:5000/ns/old:v1", "", nil); !errors.Is(err, fetch.ErrDigest) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("sniffed without Content-Type", func(t *testing.T) {
		s := newFakeSource()
		r := resp
		r.MediaType = "application/json"
		s.manifests["v1"] = r
		img, err := resolveWith(t, s, "127.0.0.1:5000/ns/old:v1", "", nil)
		if err != nil || img.MediaType != MediaTypeDockerSchema1Signed || img.Digest != payloadDigest {
			t.Fatalf("img %+v err %v", img, err)
		}
	})
}

func TestResolveSchema1Unsigned(t *testing.T) {
	m, wantLayers := schema1Fixture(t)
	body := mustJSON(t, m)
	src := newFakeSource()
	src.putManifest(MediaTypeDockerSchema1, body, "v1")
	img, err := resolveWith(t, src, "127.0.0.1:5000/ns/old:v1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != digest.FromBytes(body) || len(img.Layers) != len(wantLayers) {
		t.Errorf("digest %s, %d layers", img.Digest, len(img.Layers))
	}
}

func TestSchema1Payload(t *testing.T) {
	m, _ := schema1Fixture(t)
	body, payload := signLikeLibtrust(t, m, 1)
	got, signed, err := schema1Payload(body)
	if err != nil || !signed || !bytes.Equal(got, payload) {
		t.Fatalf("payload mismatch (signed=%v err=%v)\n%s", signed, err, got)
	}
	if _, signed, err := schema1Payload(payload); err != nil || signed {
		t.Errorf("unsigned manifest: signed=%v err=%v", signed, err)
	}

	header := func(h string) []byte {
		return []byte(`{"schemaVersion":1,"signatures":[{"protected":"` + base64.RawURLEncoding.EncodeToString([]byte(h)) + `"}]}`)
	}
	for name, b := range map[string][]byte{
		"length past end":   header(`{"formatLength":100000,"formatTail":"Cn0"}`),
		"negative length":   header(`{"formatLength":-1,"formatTail":"Cn0"}`),
		"missing tail":      header(`{"formatLength":3}`),
		"bad base64":        []byte(`{"signatures":[{"protected":"!!!"}]}`),
		"header not json":   header(`nope`),
		"tail not base64":   header(`{"formatLength":3,"formatTail":"!!"}`),
		"signatures object": []byte(`{"signatures":{}}`),
	} {
		if _, _, err := schema1Payload(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Two signatures that disagree on the payload.
	p1 := base64.RawURLEncoding.EncodeToString([]byte(`{"formatLength":3,"formatTail":"Cn0"}`))
	p2 := base64.RawURLEncoding.EncodeToString([]byte(`{"formatLength":4,"formatTail":"Cn0"}`))
	if _, _, err := schema1Payload([]byte(`{"signatures":[{"protected":"` + p1 + `"},{"protected":"` + p2 + `"}]}`)); err == nil {
		t.Error("conflicting signatures: no error")
	}
}

func TestParseSchema1Errors(t *testing.T) {
	good := `{"v1Compatibility":"{}"}`
	tests := map[string]string{
		"no layers":        `{"schemaVersion":1,"fsLayers":[],"history":[]}`,
		"length mismatch":  `{"schemaVersion":1,"fsLayers":[{"blobSum":"` + testDigest + `"}],"history":[]}`,
		"bad blobSum":      `{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:zz"}],"history":[` + good + `]}`,
		"bad compat":       `{"schemaVersion":1,"fsLayers":[{"blobSum":"` + testDigest + `"}],"history":[{"v1Compatibility":"{"}]}`,
		"wrong version":    `{"schemaVersion":2,"fsLayers":[{"blobSum":"` + testDigest + `"}],"history":[` + good + `]}`,
		"not json":         `{`,
		"cmd not a string": `{"schemaVersion":1,"fsLayers":[{"blobSum":"` + testDigest + `"}],"history":[{"v1Compatibility":"{\"config\":{\"Cmd\":5}}"}]}`,
	}
	for name, body := range tests {
		if _, err := parseSchema1([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
