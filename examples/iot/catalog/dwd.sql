-- One row per point value, with its name and whether it breaks its alarm rule.

CREATE TABLE iot.dwd_point_values (
  device STRING,
  template STRING,
  code STRING,
  name STRING,
  val DOUBLE,
  alarming BOOLEAN,
  read_time TIMESTAMP(3)
) COMMENT 'Point values with their names and alarm state' WITH (
  'connector' = 'delta',
  'owner' = 'iot-team'
);
