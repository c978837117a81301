"""Public visitor pages behind the QR codes, their JSON feed and the QR sheet."""
