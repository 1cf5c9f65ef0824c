package fetch

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestTagsFollowsPages(t *testing.T) {
	reg := newFakeRegistry(t)
	pages := map[string]string{"": `{"name":"test/app","tags":["a","b"]}`, "b": `{"name":"test/app","tags":["c"]}`}
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if !strings.HasSuffix(req.URL.Path, "/tags/list") {
				return false
			}
			last := req.URL.Query().Get("last")
			if last == "" {
				// Relative, as the distribution spec shows it.
				w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=2&last=b>; rel="next"`, r.repo))
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, pages[last])
			return true
		}
	})
	opts, _ := testOptions(t)
	tags, err := openRepo(t, reg, opts).Tags(context.Background())
	if err != nil || !slices.Equal(tags, []string{"a", "b", "c"}) {
		t.Fatalf("tags %q, %v", tags, err)
	}
}

func TestNextPage(t *testing.T) {
	for link, want := range map[string]string{
		"":                                     "",
		`</v2/a/tags/list?last=x>; rel="next"`: "http://r:5000/v2/a/tags/list?last=x",
		`<http://r:5000/v2/a/tags/list?last=y>; rel="next"`: "http://r:5000/v2/a/tags/list?last=y",
		`</v2/a/tags/list?last=x>; rel="prev"`:              "",
	} {
		got, err := nextPage("http://r:5000/v2/a/tags/list?n=1000", link)
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", link, got, err, want)
		}
	}
	if _, err := nextPage("http://r:5000/v2/a/tags/list", `<http://evil/v2/a/tags/list>; rel="next"`); err == nil {
		t.Error("a next page on another host was followed")
	}
}
