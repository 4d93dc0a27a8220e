-- One record per device and upload: every point's value, by point code.

CREATE TABLE iot.ods_readings (
  device STRING,
  template STRING,
  points MAP<STRING, DOUBLE>,
  read_time TIMESTAMP(3),
  proc_time AS PROCTIME(),
  WATERMARK FOR read_time AS read_time - INTERVAL '5' SECOND
) COMMENT 'Point values as the gateways upload them, one record per device' WITH (
  'connector' = 'kafka',
  'topic' = 'readings',
  'format' = 'json',
  'scan.startup.mode' = 'earliest-offset',
  'connection' = 'events',
  'owner' = 'iot-team'
);
