package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"testing"
)

// WriteHtpasswd writes an htpasswd file with bcrypt entries (the only hash
// docker-registry accepts), made by `htpasswd -Bbn`.
func WriteHtpasswd(t testing.TB, path string, users map[string]string) error {
	t.Helper()
	bin := RequireTool(t, "htpasswd")
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	sort.Strings(names)
	var file bytes.Buffer
	for _, name := range names {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-Bbn", name, users[name])
		cmd.Stderr = &stderr
		line, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("htpasswd -Bbn %s: %w: %s", name, err, stderr.String())
		}
		file.Write(bytes.TrimSpace(line))
		file.WriteByte('\n')
	}
	if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write htpasswd: %w", err)
	}
	return nil
}

// DockerConfigJSON returns a Docker config.json that holds credentials for
// one registry host in the "auths" form docker login writes.
func DockerConfigJSON(host, username, password string) []byte {
	type entry struct {
		Auth string `json:"auth"`
	}
	cfg := struct {
		Auths map[string]entry `json:"auths"`
	}{Auths: map[string]entry{
		host: {Auth: base64.StdEncoding.EncodeToString([]byte(username + ":" + password))},
	}}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	return data
}
