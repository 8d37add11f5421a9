print("pilot-bench: not built yet")
