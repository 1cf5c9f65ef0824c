package fetch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// maxTagPages bounds how many pages of a tag list are followed.
const maxTagPages = 1000

// Tags lists the repository's tags (GET /v2/<name>/tags/list), following
// the Link header of paginated answers.
func (r *Repository) Tags(ctx context.Context) ([]string, error) { return r.impl.tags(ctx) }

func (r *repository) tags(ctx context.Context) ([]string, error) {
	what := fmt.Sprintf("tags of %s", r.repo)
	next := fmt.Sprintf("%s://%s/v2/%s/tags/list?n=1000", r.scheme, r.repo.RegistryStr(), r.repo.RepositoryStr())
	var tags []string
	for page := 0; next != "" && page < maxTagPages; page++ {
		header, body, err := r.getWhole(ctx, what, next, []string{"application/json"}, maxManifestSize)
		if err != nil {
			return nil, err
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		tags = append(tags, list.Tags...)
		next, err = nextPage(next, header.Get("Link"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	return tags, nil
}

// nextPage resolves the URL of a Link header `<url>; rel="next"` against
// the page's; "" when there is none. It stays on the registry's host.
func nextPage(current, link string) (string, error) {
	if link == "" {
		return "", nil
	}
	target, params, ok := strings.Cut(link, ";")
	if !ok || !strings.Contains(params, `rel="next"`) {
		return "", nil
	}
	target = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(target), "<"), ">")
	base, err := url.Parse(current)
	if err != nil {
		return "", err
	}
	u, err := base.Parse(target)
	if err != nil {
		return "", err
	}
	if u.Host != base.Host {
		return "", fmt.Errorf("the next page is on another host (%s)", u.Host)
	}
	return u.String(), nil
}
