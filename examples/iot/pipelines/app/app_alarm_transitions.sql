-- A point's alarm starts (tag 0) or ends (tag 2) only when its state changes;
-- the last state of every point is kept in the pipeline's checkpointed state.
INSERT INTO iot.app_alarm_transitions
SELECT device, code, name, CASE WHEN alarming THEN 0 ELSE 2 END, val, read_time
FROM (
  SELECT device, code, name, val, alarming, read_time,
         LAG(alarming, 1, false) OVER (PARTITION BY device, code ORDER BY read_time) AS was_alarming
  FROM iot.dwd_point_values
) AS s
WHERE alarming <> was_alarming
