print("pilot-rendezvous: not built yet")
