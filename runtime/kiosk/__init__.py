"""Running the restoration page unattended on a kiosk (a Jetson in a photo shop): a systemd
unit for `trt-restore serve` and a Chromium kiosk window that opens once it is ready.
`trt-restore kiosk install|uninstall|status`; see docs/kiosk.md and deploy/jetson/README.md."""
