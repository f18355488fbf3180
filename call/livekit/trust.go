package livekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// TrustedServicesKey is the config key that lists JWT services the bot trusts whatever
// their address; notices and errors name it.
const TrustedServicesKey = "livekit.trusted_jwt_services"

// ErrUntrustedFocus marks a focus (JWT service) the bot does not send its OpenID token to.
var ErrUntrustedFocus = errors.New("untrusted LiveKit focus")

// FocusRefusal says why the bot does not use a focus a member names.
type FocusRefusal struct {
	// URL is the JWT service (livekit_service_url) as the member wrote it, normalised.
	URL string
	// Owner is the user whose membership names it.
	Owner id.UserID
	// Reason completes "I do not use it because …".
	Reason string
}

func (e *FocusRefusal) Error() string {
	if e.Owner != "" {
		return fmt.Sprintf("LiveKit service %s named by %s: %s", clip(e.URL, 200), e.Owner, e.Reason)
	}
	return fmt.Sprintf("LiveKit service %s: %s", clip(e.URL, 200), e.Reason)
}

func (e *FocusRefusal) Unwrap() error { return ErrUntrustedFocus }

// TrustOptions say which JWT services (foci) the bot sends its OpenID token to. A focus a
// call member names is used when it is listed in TrustedServices, or when it is an https
// URL on a public address that the member's homeserver or the bot's own homeserver
// advertises (.well-known/matrix/client "org.matrix.msc4143.rtc_foci", or the bot's
// homeserver's MSC4143 rtc/transports).
type TrustOptions struct {
	// TrustedServices are the operator's livekit.trusted_jwt_services: used whatever
	// their scheme (http too) and address (loopback and private too).
	TrustedServices []string
	// HTTPClient fetches .well-known/matrix/client (the bot's own client; default: a new
	// one). Lookups of other homeservers than the bot's refuse non-public addresses.
	HTTPClient *http.Client
	// Transports returns the LiveKit service URLs the bot's homeserver offers (MSC4143
	// GET rtc/transports); nil, or an empty answer: none.
	Transports func(ctx context.Context) ([]string, error)
	// CacheTTL is how long a homeserver's answer is kept (default 1 h; a failed lookup
	// is kept a tenth of it, at least a minute).
	CacheTTL time.Duration
}

// Bounds of focus discovery.
const (
	wellKnownTimeout   = 10 * time.Second
	wellKnownMaxSize   = 64 << 10
	maxAdvertisedFoci  = 16
	maxTrustCacheItems = 1024
	maxRedirects       = 3
)

// errPrivateAddress is returned by the guarded dialer.
var errPrivateAddress = errors.New("refusing to connect to a loopback, private or otherwise non-public address")

// focusTrust decides which foci the bot uses. Safe for concurrent use.
type focusTrust struct {
	listed     map[string]bool
	botServer  func() string
	own        *http.Client // the bot's homeserver's .well-known
	guarded    *http.Client // other homeservers' .well-known: public addresses only
	transports func(ctx context.Context) ([]string, error)
	ttl        time.Duration
	failTTL    time.Duration
	now        func() time.Time
	// allowPrivate lets tests serve other homeservers' .well-known on loopback.
	allowPrivate bool

	mu    sync.Mutex
	cache map[string]*advertised
}

// advertised is one homeserver's list of foci, as looked up at some time.
type advertised struct {
	ready   chan struct{}
	urls    map[string]bool
	err     error
	expires time.Time
}

func newFocusTrust(o TrustOptions, botServer func() string) *focusTrust {
	ttl := o.CacheTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	base := o.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	f := &focusTrust{
		listed: map[string]bool{}, botServer: botServer, transports: o.Transports,
		own:     lookupClient(base.Transport),
		guarded: lookupClient(guardedTransport(base.Transport)),
		ttl:     ttl, failTTL: max(ttl/10, time.Minute), now: time.Now,
		cache: map[string]*advertised{},
	}
	for _, s := range o.TrustedServices {
		if norm, err := matrixrtc.NormalizeServiceURL(s); err == nil {
			f.listed[norm] = true
		}
	}
	return f
}

// isListed reports whether the operator lists the service.
func (f *focusTrust) isListed(serviceURL string) bool {
	norm, err := matrixrtc.NormalizeServiceURL(serviceURL)
	return err == nil && f.listed[norm]
}

// check returns nil when the bot may send its OpenID token to serviceURL, named by owner's
// membership, and a *FocusRefusal saying why not otherwise.
func (f *focusTrust) check(ctx context.Context, serviceURL string, owner id.UserID) error {
	norm, err := matrixrtc.NormalizeServiceURL(serviceURL)
	if err != nil {
		return &FocusRefusal{URL: serviceURL, Owner: owner, Reason: "it is not an http(s) URL without credentials, query or fragment"}
	}
	if f.listed[norm] {
		return nil
	}
	u, _ := url.Parse(norm)
	if u.Scheme != "https" {
		return &FocusRefusal{URL: norm, Owner: owner, Reason: "it is a plain http URL, and I send my credentials over plain http only to services listed in " + TrustedServicesKey}
	}
	if !f.allowPrivate && !publicHost(u.Hostname()) {
		return &FocusRefusal{URL: norm, Owner: owner, Reason: "it is on a loopback or private address, which I use only when listed in " + TrustedServicesKey}
	}
	own := f.botServer()
	if f.advertisedBy(ctx, "wk\x00"+own, func(ctx context.Context) ([]string, error) { return fetchWellKnownFoci(ctx, f.own, own) })[norm] {
		return nil
	}
	if f.transports != nil && f.advertisedBy(ctx, "transports", f.transports)[norm] {
		return nil
	}
	theirs := owner.Homeserver()
	if theirs != "" && theirs != own && id.ValidateServerName(theirs) {
		if host := id.ParseServerName(theirs); host != nil && (f.allowPrivate || publicHost(host.Host)) {
			if f.advertisedBy(ctx, "wk\x00"+theirs, func(ctx context.Context) ([]string, error) { return fetchWellKnownFoci(ctx, f.guarded, theirs) })[norm] {
				return nil
			}
		}
	}
	if ctx.Err() != nil {
		return &FocusRefusal{URL: norm, Owner: owner, Reason: "I could not check in time whether a homeserver advertises it"}
	}
	where := fmt.Sprintf("%s's .well-known/matrix/client (org.matrix.msc4143.rtc_foci) does not advertise it", own)
	if theirs != "" && theirs != own {
		where = fmt.Sprintf("neither %s's nor %s's .well-known/matrix/client (org.matrix.msc4143.rtc_foci) advertises it", theirs, own)
	}
	return &FocusRefusal{URL: norm, Owner: owner, Reason: where + ", and " + TrustedServicesKey + " does not list it"}
}

// advertisedBy returns the foci a source advertises, from the cache or looked up once
// (concurrent callers share the lookup). A failed lookup advertises nothing.
func (f *focusTrust) advertisedBy(ctx context.Context, key string, fetch func(context.Context) ([]string, error)) map[string]bool {
	now := f.now()
	f.mu.Lock()
	e := f.cache[key]
	if e == nil || (isClosed(e.ready) && !now.Before(e.expires)) {
		if e == nil && len(f.cache) >= maxTrustCacheItems {
			f.evictLocked(now)
		}
		e = &advertised{ready: make(chan struct{})}
		f.cache[key] = e
		go f.lookup(e, fetch)
	}
	f.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return e.urls
}

// lookup fills e; it is bounded by its own timeout so that a caller giving up does not
// cache a failure for everyone else.
func (f *focusTrust) lookup(e *advertised, fetch func(context.Context) ([]string, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), wellKnownTimeout)
	defer cancel()
	list, err := fetch(ctx)
	urls := map[string]bool{}
	for _, s := range list {
		if norm, nerr := matrixrtc.NormalizeServiceURL(s); nerr == nil {
			urls[norm] = true
		}
	}
	f.mu.Lock()
	e.urls, e.err = urls, err
	e.expires = f.now().Add(f.ttl)
	if err != nil {
		e.expires = f.now().Add(f.failTTL)
	}
	f.mu.Unlock()
	close(e.ready)
}

// evictLocked makes room in the cache: expired entries first, then any finished one.
func (f *focusTrust) evictLocked(now time.Time) {
	for k, e := range f.cache {
		if isClosed(e.ready) && !now.Before(e.expires) {
			delete(f.cache, k)
		}
	}
	for k, e := range f.cache {
		if len(f.cache) < maxTrustCacheItems {
			return
		}
		if isClosed(e.ready) {
			delete(f.cache, k)
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// checkSFU vets the SFU address a JWT service that the operator does not list handed out:
// wss (or https) on a public address, so a service cannot point the bot at an internal host.
func (f *focusTrust) checkSFU(ctx context.Context, serviceURL, sfuURL string) error {
	if f.isListed(serviceURL) {
		return nil
	}
	u, err := url.Parse(sfuURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("SFU url %q is not a URL", clip(sfuURL, 200))
	}
	if u.Scheme != "wss" && u.Scheme != "https" {
		return fmt.Errorf("SFU url %s is not wss://, and the JWT service is not listed in %s", clip(sfuURL, 200), TrustedServicesKey)
	}
	host := u.Hostname()
	if f.allowPrivate {
		return nil
	}
	if !publicHost(host) {
		return fmt.Errorf("SFU %s is on a loopback or private address, and the JWT service is not listed in %s", host, TrustedServicesKey)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve SFU %s: %w", host, err)
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return fmt.Errorf("SFU %s resolves to a non-public address, and the JWT service is not listed in %s", host, TrustedServicesKey)
		}
	}
	return nil
}

// fetchWellKnownFoci reads the LiveKit foci a homeserver advertises in its
// .well-known/matrix/client (over https, bounded in time and size). No document, or one
// without foci, advertises none.
func fetchWellKnownFoci(ctx context.Context, hc *http.Client, server string) ([]string, error) {
	if !id.ValidateServerName(server) {
		return nil, fmt.Errorf("server name %q is not valid", clip(server, 100))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+server+"/.well-known/matrix/client", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s's .well-known: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s's .well-known: HTTP %d", server, resp.StatusCode)
	}
	if resp.ContentLength > wellKnownMaxSize {
		return nil, fmt.Errorf("%s's .well-known is larger than %d bytes", server, wellKnownMaxSize)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, wellKnownMaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s's .well-known: %w", server, err)
	}
	if len(body) > wellKnownMaxSize {
		return nil, fmt.Errorf("%s's .well-known is larger than %d bytes", server, wellKnownMaxSize)
	}
	var doc struct {
		Foci json.RawMessage `json:"org.matrix.msc4143.rtc_foci"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%s's .well-known is not a JSON object", server)
	}
	ts, err := matrixrtc.ParseTransports(doc.Foci)
	if err != nil {
		return nil, fmt.Errorf("%s's .well-known rtc_foci: %w", server, err)
	}
	var out []string
	for _, t := range ts {
		if t.IsLiveKit() && len(out) < maxAdvertisedFoci {
			out = append(out, t.ServiceURL)
		}
	}
	return out, nil
}

// publicHost reports whether a host name or address may be public: not "localhost" (or a
// name under it) and not a literal non-public address. Names are checked again when dialled.
func publicHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if h == "" || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return false
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return publicAddr(a)
	}
	return true
}

// Address ranges that are not public besides what netip classifies.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
}

// publicAddr reports whether an address is a public unicast one.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// guardedTransport is base (or Go's default transport) with a dialer that connects to
// public addresses only, checked after name resolution so a name cannot point at an
// internal host. Connections to a proxy the operator configured are not checked.
func guardedTransport(base http.RoundTripper) *http.Transport {
	var t *http.Transport
	if bt, ok := base.(*http.Transport); ok && bt != nil {
		t = bt.Clone()
	} else {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	var proxies sync.Map // host:port of proxies the Proxy function chose
	if proxy := t.Proxy; proxy != nil {
		t.Proxy = func(r *http.Request) (*url.URL, error) {
			u, err := proxy(r)
			if u != nil {
				port := u.Port()
				if port == "" {
					port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
				}
				proxies.Store(net.JoinHostPort(u.Hostname(), port), true)
			}
			return u, err
		}
	}
	direct := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	public := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !publicAddr(ap.Addr()) {
			return errPrivateAddress
		}
		return nil
	}}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := proxies.Load(addr); ok {
			return direct.DialContext(ctx, network, addr)
		}
		return public.DialContext(ctx, network, addr)
	}
	t.DialTLSContext = nil
	return t
}

// lookupClient is a client for .well-known lookups over transport (the bot's own, or a
// guarded copy): no cookies, a timeout, and only a few https redirects.
func lookupClient(transport http.RoundTripper) *http.Client {
	return &http.Client{
		Transport: transport,
		Timeout:   wellKnownTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" {
				return errors.New("redirect to a non-https URL")
			}
			return nil
		},
	}
}

// tokenClient is a client for JWT services: base's timeout over transport, no cookies,
// and no redirects (a redirect would carry the OpenID token somewhere else).
func tokenClient(base *http.Client, transport http.RoundTripper) *http.Client {
	timeout := base.Timeout
	if timeout <= 0 {
		timeout = tokenTimeout
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
