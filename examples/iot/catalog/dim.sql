-- Small, slowly changing tables in compacted topics, held in memory by the
-- pipelines that look them up: no request per row.

CREATE TABLE iot.dim_point_names (
  template STRING,
  code STRING,
  name STRING,
  PRIMARY KEY (template, code) NOT ENFORCED
) COMMENT 'The name of each point of a device template' WITH (
  'connector' = 'kafka',
  'topic' = 'point_names',
  'format' = 'json',
  'scan.startup.mode' = 'earliest-offset',
  'connection' = 'events',
  'lookup.broadcast' = 'true',
  'owner' = 'iot-team'
);

CREATE TABLE iot.dim_alarm_rules (
  device STRING,
  code STRING,
  min_value DOUBLE,
  max_value DOUBLE,
  PRIMARY KEY (device, code) NOT ENFORCED
) COMMENT 'The band a point must stay in; outside it, the point is alarming' WITH (
  'connector' = 'kafka',
  'topic' = 'alarm_rules',
  'format' = 'json',
  'scan.startup.mode' = 'earliest-offset',
  'connection' = 'events',
  'lookup.broadcast' = 'true',
  'owner' = 'iot-team'
);
