"""An xfed process for the Python tests: started with its stderr (the log)
collected by a reader thread, searched while it runs, stopped with SIGTERM."""
import signal
import subprocess
import threading
import time


class XfedProcess:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True)
        self.lines = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout, start=0):
        """Index of the first log line at or after `start` containing text, or
        None after `timeout` seconds or when the process ended."""
        return self._find(text, timeout, start)

    def _find(self, text, timeout, start):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for i in range(start, len(self.lines)):
                    if text in self.lines[i]:
                        return i
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        return None

    def wait_line(self, text, timeout, start=0):
        """Like wait_for, but the line itself."""
        i = self._find(text, timeout, start)
        with self.lock:
            return None if i is None else self.lines[i]

    def count(self):
        with self.lock:
            return len(self.lines)

    def log(self):
        with self.lock:
            return "\n".join(self.lines)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after `timeout` s; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.proc.stderr.close()
        return self.proc.returncode
