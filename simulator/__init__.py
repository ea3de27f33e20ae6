"""trainsim: distributed-training efficiency simulator."""
