package config

import (
	"fmt"
	"strings"
)

// placeholderHost reports whether host is one of the domains reserved for examples
// (RFC 2606): example.org, example.com, example.net and their subdomains. The example
// config uses them for what the operator must fill in; no homeserver lives there.
func placeholderHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	for _, d := range []string{"example.org", "example.com", "example.net"} {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// Values the example config shows in its comments, refused when copied unchanged.
const (
	exampleLiveKitURL    = "wss://livekit.example.org"
	exampleLiveKitAPIKey = "APIxxxxxxxx"
	exampleJWTService    = "https://livekit-jwt.example.org"
	exampleTURN          = "turn:turn.example.org:3478"
)

// placeholderErrors reports values copied from the example's comments unchanged (the
// account's placeholders are checked with the matrix section).
func (c *Config) placeholderErrors() []error {
	var errs []error
	same := func(a, b string) bool { return strings.EqualFold(strings.TrimRight(a, "/"), b) }
	for i, s := range c.WebRTC.ICEServers {
		for _, u := range s.URLs {
			if same(u, exampleTURN) {
				errs = append(errs, fmt.Errorf("webrtc.ice_servers[%d].urls: %s is the example's; fill in your TURN server or remove the entry", i, u))
			}
		}
	}
	for i, s := range c.LiveKit.TrustedJWTServices {
		if same(s, exampleJWTService) {
			errs = append(errs, fmt.Errorf("livekit.trusted_jwt_services[%d]: %s is the example's; fill in your JWT service or remove it", i, s))
		}
	}
	for i, d := range c.LiveKit.Deployments {
		name := d.Name
		if !deploymentName.MatchString(name) {
			name = fmt.Sprint(i)
		}
		if same(d.URL, exampleLiveKitURL) {
			errs = append(errs, fmt.Errorf("%s: %s is the example's; fill in your LiveKit server's URL", DeploymentKey(name, "url"), d.URL))
		}
		if d.APIKey == exampleLiveKitAPIKey {
			errs = append(errs, fmt.Errorf("%s: %s is the example's; fill in your LiveKit API key", DeploymentKey(name, "api_key"), d.APIKey))
		}
	}
	return errs
}
