// PilotRendezvous: work in progress; see ../shared/design/ARCHITECTURE.md.
