-- reflow's own database next to Temporal's (same server, separate database and user).
CREATE USER reflow WITH PASSWORD 'reflow';
CREATE DATABASE reflow OWNER reflow;
