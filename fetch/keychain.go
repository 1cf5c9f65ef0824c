package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultKeychain resolves credentials, first match wins:
//
//  1. environment: IMGFS_USERNAME/IMGFS_PASSWORD, else
//     APPTAINER_DOCKER_USERNAME/PASSWORD, else SINGULARITY_DOCKER_USERNAME/PASSWORD
//     (the first pair with both set), for every registry;
//  2. $REGISTRY_AUTH_FILE when set (podman/skopeo auth.json), which ggcr's
//     keychain only reads when no Docker config exists at all;
//  3. authn.DefaultKeychain: $HOME/.docker/config.json or
//     $DOCKER_CONFIG/config.json (auths, credHelpers, credsStore), else
//     $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
//     $XDG_CONFIG_HOME/containers/auth.json; else anonymous.
//
// Variables are read at each resolution, not when the keychain is built.
func DefaultKeychain() authn.Keychain {
	return authn.NewMultiKeychain(envKeychain{getenv: os.Getenv}, authFileKeychain{getenv: os.Getenv}, authn.DefaultKeychain)
}

// envCredentialVars lists the (username, password) variable pairs in order
// of precedence.
func envCredentialVars() [][2]string {
	return [][2]string{
		{"IMGFS_USERNAME", "IMGFS_PASSWORD"},
		{"APPTAINER_DOCKER_USERNAME", "APPTAINER_DOCKER_PASSWORD"},
		{"SINGULARITY_DOCKER_USERNAME", "SINGULARITY_DOCKER_PASSWORD"},
	}
}

// envKeychain gives the credentials of the first complete pair of
// envCredentialVars to every registry, as Apptainer does.
type envKeychain struct {
	getenv func(string) string
}

func (k envKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	for _, pair := range envCredentialVars() {
		user, pass := k.getenv(pair[0]), k.getenv(pair[1])
		if user != "" && pass != "" {
			return authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}), nil
		}
	}
	return authn.Anonymous, nil
}

// authFileKeychain reads $REGISTRY_AUTH_FILE (Docker config format, as
// podman writes it) when the variable is set: a user who names an auth file
// expects it to be used even if a ~/.docker/config.json exists.
type authFileKeychain struct {
	getenv func(string) string
}

func (k authFileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

func (k authFileKeychain) ResolveContext(_ context.Context, target authn.Resource) (authn.Authenticator, error) {
	path := k.getenv("REGISTRY_AUTH_FILE")
	if path == "" {
		return authn.Anonymous, nil
	}
	f, err := os.Open(filepath.Clean(path))
	if os.IsNotExist(err) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("REGISTRY_AUTH_FILE: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("REGISTRY_AUTH_FILE %s: %w", path, err)
	}
	// Same lookup as ggcr's DefaultKeychain: the repository key first (podman
	// allows per-repository entries), then the registry.
	var empty types.AuthConfig
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("REGISTRY_AUTH_FILE %s: %w", path, err)
		}
		cfg.ServerAddress = ""
		if cfg != empty {
			return authn.FromConfig(authn.AuthConfig{
				Username:      cfg.Username,
				Password:      cfg.Password,
				Auth:          cfg.Auth,
				IdentityToken: cfg.IdentityToken,
				RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}
