package lkpeer

import "errors"

// ExternalAccess is the SFU URL and token a peer made with ExternalMedia got from the JWT
// service in Join, for the client that carries its media.
func (p *Peer) ExternalAccess() (url, jwt string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.external == nil {
		return "", "", errors.New("not joined with ExternalMedia")
	}
	return p.external.url, p.external.jwt, nil
}

// MediaKey is the key index and raw key that frames are to be encrypted with now (nil when
// not encrypting): what the peer sent every member device.
func (p *Peer) MediaKey() (uint8, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sendIndex, append([]byte(nil), p.sendKey...)
}
