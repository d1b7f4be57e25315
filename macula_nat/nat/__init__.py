"""NAT behaviour: the profile model, the observer (STUN server), the detector and the cache."""
