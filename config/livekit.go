package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// LiveKit lists the LiveKit deployments the operator runs, recorded through LiveKit Egress:
// La Suite Meet rooms, any room on those servers, and (when asked) unencrypted Element
// Call calls whose SFU is one of them.
type LiveKit struct {
	// TrustedJWTServices are MatrixRTC JWT services (lk-jwt-service, the
	// livekit_service_url call members name) the bot sends its OpenID token to whatever
	// their address: plain http and loopback or private addresses too. Other services are
	// used only over https on public addresses, when the member's homeserver or the bot's
	// own advertises them (.well-known/matrix/client org.matrix.msc4143.rtc_foci, or MSC4143
	// rtc/transports).
	TrustedJWTServices []string `yaml:"trusted_jwt_services"`

	// Deployments hold API secrets (secret: never written from the environment into a
	// generated config).
	Deployments []LiveKitDeployment `yaml:"deployments" secret:"true"`
	// RecordElementCallWithEgress records an unencrypted Element Call call with Egress
	// when its SFU is one of the deployments, instead of joining it as a subscriber.
	// Encrypted calls always use the subscriber: Egress cannot decrypt.
	RecordElementCallWithEgress bool `yaml:"record_element_call_with_egress"`
}

// Egress recording modes.
const (
	// EgressTracks: one track egress per published track, one file each (Opus in Ogg,
	// VP8/VP9 in WebM, H.264 in MP4), in a call folder with a manifest like native ones.
	EgressTracks = "tracks"
	// EgressComposite: one room composite MP4 (Egress renders the room with Chrome).
	EgressComposite = "composite"
	// EgressAudio: one audio-only room composite in Ogg, as La Suite Meet's transcript mode.
	EgressAudio = "audio"
)

// Egress output places.
const (
	// OutputAuto: s3 when storage.s3 is set, else local.
	OutputAuto = "auto"
	// OutputS3: Egress uploads each file to storage.s3 itself.
	OutputS3 = "s3"
	// OutputLocal: Egress writes into the call folder (it must see the same filesystem).
	OutputLocal = "local"
)

// LiveKitDeployment is one LiveKit server (or cluster) with Egress workers.
type LiveKitDeployment struct {
	// Name identifies the deployment in commands ("!start meet/room") and logs.
	Name string `yaml:"name"`
	// URL is the server's address, wss:// (or ws://, https://, http://).
	URL string `yaml:"url"`
	// APIKey and the secret: one of APISecret, APISecretFile or APISecretEnv (the name of
	// an environment variable holding it).
	APIKey        string `yaml:"api_key"`
	APISecret     string `yaml:"api_secret" secret:"true"`
	APISecretFile string `yaml:"api_secret_file"`
	APISecretEnv  string `yaml:"api_secret_env"`
	// MeetURLPrefixes are La Suite Meet addresses whose rooms live on this deployment,
	// e.g. "https://meet.example.org/". A room URL with one of them names a room here.
	MeetURLPrefixes []string `yaml:"meet_url_prefixes"`
	// MeetAPIURL is Meet's API, which turns a room's slug into its LiveKit room name;
	// empty: the prefix's origin + /api/v1.0/.
	MeetAPIURL string `yaml:"meet_api_url"`
	// DefaultMode is tracks, composite or audio, used when !start names none.
	DefaultMode string `yaml:"default_mode"`
	// Layout is the room composite layout (grid, speaker, single-speaker, or a custom
	// template's name).
	Layout string `yaml:"layout"`
	// Output is auto, s3 or local.
	Output string `yaml:"output"`
	// LocalDir is recordings.dir as the Egress workers see it (output local); empty: the
	// same absolute path as here.
	LocalDir string `yaml:"local_dir"`
	// WebhookPath is where this bot's HTTP server (http.listen) takes the deployment's
	// webhooks; deployments may share a path (the signature names the key).
	WebhookPath string `yaml:"webhook_path"`
	// PollInterval is how often the room's tracks and the egresses are listed through the
	// server API (new tracks, and completion when a webhook is missed).
	PollInterval Duration `yaml:"poll_interval"`
	// StartTimeout bounds how long an egress may take to start before the room is told.
	StartTimeout Duration `yaml:"start_timeout"`

	// Who may record what on this deployment (LiveKitAccess below): nothing until the
	// operator says so.
	LiveKitAccess `yaml:",inline"`
}

// DefaultLiveKitDeployment is a deployment with every default filled in.
func DefaultLiveKitDeployment() LiveKitDeployment {
	return LiveKitDeployment{
		DefaultMode:  EgressTracks,
		Layout:       "speaker",
		Output:       OutputAuto,
		WebhookPath:  "/livekit/webhook",
		PollInterval: Duration(2 * time.Second),
		StartTimeout: Duration(30 * time.Second),
	}
}

// setDefaults fills a deployment the config file is about to describe.
func (d *LiveKitDeployment) setDefaults() { *d = DefaultLiveKitDeployment() }

// Secret returns the API secret from the config, its file or its environment variable.
func (d LiveKitDeployment) Secret() (string, error) {
	switch {
	case d.APISecret != "":
		return d.APISecret, nil
	case d.APISecretFile != "":
		s, err := readSecretFile(d.APISecretFile)
		if err != nil {
			return "", fmt.Errorf("livekit deployment %s: api_secret_file: %w", d.Name, err)
		}
		return s, nil
	case d.APISecretEnv != "":
		s := strings.TrimSpace(os.Getenv(d.APISecretEnv))
		if s == "" {
			return "", fmt.Errorf("livekit deployment %s: the environment variable %s (api_secret_env) is empty", d.Name, d.APISecretEnv)
		}
		return s, nil
	}
	return "", fmt.Errorf("livekit deployment %s has no API secret", d.Name)
}

// unwrapDeployment drops the "livekit deployment NAME: " Secret puts before its errors.
func unwrapDeployment(err error, name string) error {
	return errors.New(strings.TrimPrefix(err.Error(), "livekit deployment "+name+": "))
}

// HTTPURL is the server API's base URL (https:// for wss://).
func (d LiveKitDeployment) HTTPURL() string {
	u := strings.TrimRight(d.URL, "/")
	switch {
	case strings.HasPrefix(u, "wss://"):
		return "https://" + strings.TrimPrefix(u, "wss://")
	case strings.HasPrefix(u, "ws://"):
		return "http://" + strings.TrimPrefix(u, "ws://")
	}
	return u
}

// Mode returns the deployment's default mode (tracks when unset).
func (d LiveKitDeployment) Mode() string {
	if d.DefaultMode == "" {
		return EgressTracks
	}
	return d.DefaultMode
}

func defaultLiveKit() LiveKit {
	return LiveKit{TrustedJWTServices: []string{}, Deployments: []LiveKitDeployment{}}
}

var (
	deploymentName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	layoutName     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	envName        = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// reservedPaths are routes of the bot's HTTP server a webhook path must not shadow.
var reservedPaths = []string{"/download/", "/s3/", "/healthz", "/metrics", "/debug/pprof/"}

func (c *Config) validateLiveKit() []error {
	var errs []error
	for i, s := range c.LiveKit.TrustedJWTServices {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "" ||
			u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
			errs = append(errs, fmt.Errorf("livekit.trusted_jwt_services[%d]: %q must be an https:// or http:// URL without credentials, query or fragment (the livekit_service_url of a JWT service)", i, s))
		}
	}
	names := map[string]bool{}
	prefixes := map[string]string{}
	keysByPath := map[string]map[string]string{}
	for i, d := range c.LiveKit.Deployments {
		where := fmt.Sprintf("livekit.deployments[%d]", i)
		if d.Name != "" {
			where = "livekit deployment " + d.Name
		}
		switch {
		case !deploymentName.MatchString(d.Name):
			errs = append(errs, fmt.Errorf("%s: name %q must be 1-32 lower-case letters, digits or dashes", where, d.Name))
		case names[d.Name]:
			errs = append(errs, fmt.Errorf("%s: the name is used twice", where))
		}
		names[d.Name] = true
		if u, err := url.Parse(d.URL); err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" ||
			(u.Scheme != "wss" && u.Scheme != "ws" && u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("%s: url %q must be a wss://, ws://, https:// or http:// URL without credentials or query", where, d.URL))
		}
		if d.APIKey == "" {
			errs = append(errs, fmt.Errorf("%s: api_key is required", where))
		}
		set := 0
		for _, s := range []string{d.APISecret, d.APISecretFile, d.APISecretEnv} {
			if s != "" {
				set++
			}
		}
		if set != 1 {
			errs = append(errs, fmt.Errorf("%s: set exactly one of api_secret, api_secret_file and api_secret_env", where))
		}
		if d.APISecretEnv != "" && !envName.MatchString(d.APISecretEnv) {
			errs = append(errs, fmt.Errorf("%s: api_secret_env %q is not an environment variable name", where, d.APISecretEnv))
		}
		if d.APISecret != "" && len(d.APISecret) < 32 {
			errs = append(errs, fmt.Errorf("%s: api_secret must be at least 32 characters (LiveKit refuses shorter ones)", where))
		}
		// The file and the variable are read again when the bot starts; a missing one is
		// reported with every other problem now.
		if set == 1 && d.APISecret == "" && (d.APISecretEnv == "" || envName.MatchString(d.APISecretEnv)) {
			if s, err := d.Secret(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, unwrapDeployment(err, d.Name)))
			} else if len(s) < 32 {
				errs = append(errs, fmt.Errorf("%s: the API secret in %s must be at least 32 characters (LiveKit refuses shorter ones)", where, cmp.Or(d.APISecretFile, d.APISecretEnv)))
			}
		}
		for _, p := range d.MeetURLPrefixes {
			if u, err := url.Parse(p); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.User != nil {
				errs = append(errs, fmt.Errorf("%s: meet_url_prefixes: %q must be an http(s) URL", where, p))
				continue
			}
			key := strings.ToLower(strings.TrimRight(p, "/"))
			if other, ok := prefixes[key]; ok {
				errs = append(errs, fmt.Errorf("%s: meet_url_prefixes: %q is also a prefix of deployment %s", where, p, other))
			}
			prefixes[key] = d.Name
		}
		if d.MeetAPIURL != "" {
			if u, err := url.Parse(d.MeetAPIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				errs = append(errs, fmt.Errorf("%s: meet_api_url %q must be an http(s) URL", where, d.MeetAPIURL))
			}
		}
		switch d.DefaultMode {
		case EgressTracks, EgressComposite, EgressAudio:
		default:
			errs = append(errs, fmt.Errorf("%s: default_mode %q must be tracks, composite or audio", where, d.DefaultMode))
		}
		if !layoutName.MatchString(d.Layout) {
			errs = append(errs, fmt.Errorf("%s: layout %q must be a layout name such as speaker or grid", where, d.Layout))
		}
		switch d.Output {
		case OutputAuto, OutputLocal:
		case OutputS3:
			if !c.Storage.S3.Enabled() {
				errs = append(errs, fmt.Errorf("%s: output s3 needs storage.s3", where))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: output %q must be auto, s3 or local", where, d.Output))
		}
		if d.LocalDir != "" && !filepath.IsAbs(d.LocalDir) {
			errs = append(errs, fmt.Errorf("%s: local_dir %q must be an absolute path", where, d.LocalDir))
		}
		if !strings.HasPrefix(d.WebhookPath, "/") || strings.ContainsAny(d.WebhookPath, "?#{} ") || len(d.WebhookPath) > 200 {
			errs = append(errs, fmt.Errorf("%s: webhook_path %q must be a path starting with /", where, d.WebhookPath))
		} else {
			for _, r := range reservedPaths {
				if strings.HasPrefix(d.WebhookPath, r) || d.WebhookPath+"/" == r {
					errs = append(errs, fmt.Errorf("%s: webhook_path %q is taken by the bot's own %s", where, d.WebhookPath, r))
				}
			}
			keys := keysByPath[d.WebhookPath]
			if keys == nil {
				keys = map[string]string{}
				keysByPath[d.WebhookPath] = keys
			}
			if other, ok := keys[d.APIKey]; ok && d.APIKey != "" {
				errs = append(errs, fmt.Errorf("%s: deployments %s and %s share webhook_path and api_key; their webhooks could not be told apart", where, other, d.Name))
			}
			keys[d.APIKey] = d.Name
		}
		if p := d.PollInterval.D(); p < 500*time.Millisecond || p > time.Minute {
			errs = append(errs, fmt.Errorf("%s: poll_interval %s must be between 500ms and 1m", where, p))
		}
		if s := d.StartTimeout.D(); s < 5*time.Second || s > 10*time.Minute {
			errs = append(errs, fmt.Errorf("%s: start_timeout %s must be between 5s and 10m", where, s))
		}
		errs = append(errs, d.LiveKitAccess.validate(i, d.Name)...)
	}
	if c.LiveKit.RecordElementCallWithEgress && len(c.LiveKit.Deployments) == 0 {
		errs = append(errs, errors.New("livekit.record_element_call_with_egress needs at least one livekit deployment"))
	}
	return errs
}

// LiveKitAccess says who may record what on a deployment. The bot records a LiveKit room
// only when one of these allows it for the Matrix room that asks (or the user who asks);
// with none set, nothing can be recorded there. The unencrypted Element Call path
// (record_element_call_with_egress) needs none of them: a room may always record its own
// call.
type LiveKitAccess struct {
	// AllowedRooms lets Matrix rooms record LiveKit rooms of this deployment.
	AllowedRooms []LiveKitRoomGrant `yaml:"allowed_rooms"`
	// AllowedUsers may record any room of this deployment, from any Matrix room the bot is
	// in (operators, admins).
	AllowedUsers []string `yaml:"allowed_users"`
	// AllowAll lets every Matrix room the bot is in record every room of this deployment.
	// Only for a private deployment on a homeserver that does not federate with strangers:
	// on an open federation anyone who invites the bot could record any call on the server.
	AllowAll bool `yaml:"allow_all"`
}

// LiveKitRoomGrant lets one Matrix room record some LiveKit rooms.
type LiveKitRoomGrant struct {
	// MatrixRoom is a room id ("!abc:example.org") or an alias ("#team:example.org"); an
	// alias is resolved through the bot's homeserver at each !start, so it is only as
	// trustworthy as whoever may change it.
	MatrixRoom string `yaml:"matrix_room"`
	// LiveKitRooms are LiveKit room names or patterns: * matches any run of characters
	// ("/" included), ? one character, everything else itself ("*" alone: every room). A
	// La Suite Meet URL is allowed when a pattern matches its slug or the LiveKit room
	// Meet's API names for it.
	LiveKitRooms []string `yaml:"livekit_rooms"`
}

// DeploymentKey names a key of a deployment as the config does, for messages:
// DeploymentKey("meet", "allowed_rooms") is "livekit.deployments[meet].allowed_rooms".
func DeploymentKey(deployment, key string) string {
	return "livekit.deployments[" + deployment + "]." + key
}

var (
	matrixRoomRef  = regexp.MustCompile(`^[!#][^\s:]+:[^\s]+$`)
	matrixUserID   = regexp.MustCompile(`^@[^\s:]+:[^\s]+$`)
	livekitPattern = regexp.MustCompile(`^[^\s\x00-\x1f\x7f]{1,256}$`)
)

// validate checks the access keys of deployment i (named name).
func (a LiveKitAccess) validate(i int, name string) []error {
	dep := name
	if !deploymentName.MatchString(name) {
		dep = fmt.Sprint(i)
	}
	var errs []error
	for j, g := range a.AllowedRooms {
		key := DeploymentKey(dep, fmt.Sprintf("allowed_rooms[%d]", j))
		if len(g.MatrixRoom) > 255 || !matrixRoomRef.MatchString(g.MatrixRoom) {
			errs = append(errs, fmt.Errorf("%s.matrix_room %q must be a Matrix room id (!abc:example.org) or alias (#room:example.org)", key, g.MatrixRoom))
		}
		if len(g.LiveKitRooms) == 0 {
			errs = append(errs, fmt.Errorf("%s.livekit_rooms must list at least one LiveKit room name or pattern (\"*\" for every room)", key))
		}
		for _, p := range g.LiveKitRooms {
			if !livekitPattern.MatchString(p) {
				errs = append(errs, fmt.Errorf("%s.livekit_rooms: %q is not a LiveKit room name or pattern (1-256 characters, no spaces)", key, p))
			}
		}
	}
	for _, u := range a.AllowedUsers {
		if len(u) > 255 || !matrixUserID.MatchString(u) {
			errs = append(errs, fmt.Errorf("%s: %q is not a Matrix user id (@user:example.org)", DeploymentKey(dep, "allowed_users"), u))
		}
	}
	return errs
}
