-- An alarm's start (tag 0) and end (tag 2), once each.

CREATE TABLE iot.app_alarm_transitions (
  device STRING,
  code STRING,
  name STRING,
  tag BIGINT,
  val DOUBLE,
  read_time TIMESTAMP(3)
) COMMENT 'Alarm transitions: tag 0 when a point starts alarming, 2 when it stops' WITH (
  'connector' = 'delta',
  'owner' = 'iot-team'
);
