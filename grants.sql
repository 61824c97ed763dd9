-- grants.sql: what Kamailio's database user may do, held by the role
-- rtb_edge: read its own tables and the routing view, and claim and record
-- calls only through the procedures. The app's user owns everything else.
--
-- Run it as an administrator in the app's database, after every upgrade
-- (a revision may add what Kamailio reads; running it again is harmless):
--   mariadb -u root rtb < grants.sql
-- and once, for Kamailio's user:
--   GRANT rtb_edge TO 'kamailio'@'192.0.2.10';
--   SET DEFAULT ROLE rtb_edge FOR 'kamailio'@'192.0.2.10';
-- A role is the server's, not one database's: give each app database on a
-- server a role of its own (edit the name here and in those two lines).

CREATE ROLE IF NOT EXISTS rtb_edge;

GRANT SELECT ON version TO rtb_edge;
GRANT SELECT ON subscriber TO rtb_edge;
GRANT SELECT ON address TO rtb_edge;
GRANT SELECT ON live_reservation_routes TO rtb_edge;
GRANT EXECUTE ON PROCEDURE rtb_confirm TO rtb_edge;
GRANT EXECUTE ON PROCEDURE rtb_call_event TO rtb_edge;
GRANT EXECUTE ON PROCEDURE rtb_call_untracked TO rtb_edge;
GRANT EXECUTE ON PROCEDURE rtb_expire TO rtb_edge;
GRANT EXECUTE ON PROCEDURE rtb_pstn_match TO rtb_edge;
GRANT EXECUTE ON PROCEDURE rtb_retain TO rtb_edge;
GRANT EXECUTE ON PROCEDURE rtb_gateway_auth TO rtb_edge;
GRANT EXECUTE ON FUNCTION rtb_call_headers TO rtb_edge;
