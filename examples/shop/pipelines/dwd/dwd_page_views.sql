INSERT INTO shop.dwd_page_views
SELECT user_id, LOWER(page), view_time
FROM shop.ods_page_views
WHERE user_id IS NOT NULL AND page LIKE '/%'
