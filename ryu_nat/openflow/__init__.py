"""What the gateway asks of the switch, as plain values: no Ryu imports here."""
