# Shared by the benchmark scripts (sourced): a free port, a process's CPU ticks, and one
# nginx answering 200 "ok" on 127.0.0.1:$NP from folder $1 (its PID appended to PIDS).
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
start_nginx() {
  local d=$1/ngx
  NP=$(port)
  mkdir -p "$d/logs" "$d/tmp"
  cat >"$d/nginx.conf" <<NGX
worker_processes 1; pid $d/nginx.pid; error_log $d/logs/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $d/tmp; proxy_temp_path $d/tmp;
  fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  server { listen 127.0.0.1:$NP; location / { return 200 "ok"; } } }
NGX
  nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' & PIDS+=($!)
}
