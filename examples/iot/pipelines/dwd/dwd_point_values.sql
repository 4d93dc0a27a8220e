-- Each device's upload becomes one row per point, named, and judged against its alarm rule.
INSERT INTO iot.dwd_point_values
SELECT r.device, r.template, r.e['key'], n.name, r.e['value'],
       COALESCE(r.e['value'] < a.min_value OR r.e['value'] > a.max_value, false),
       r.read_time
FROM (
  SELECT device, template, read_time, unnest(map_entries(points)) AS e
  FROM iot.ods_readings
) AS r
LEFT JOIN iot.dim_point_names FOR SYSTEM_TIME AS OF r.proc_time AS n
  ON r.template = n.template AND r.e['key'] = n.code
LEFT JOIN iot.dim_alarm_rules FOR SYSTEM_TIME AS OF r.proc_time AS a
  ON r.device = a.device AND r.e['key'] = a.code
