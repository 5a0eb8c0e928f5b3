// A browser XMLHttpRequest forwarded to the real network with fetch (Node 20 built-in), so the
// tracker's own requests reach the dev SLS sink; installed as `window` before the tracker is
// imported. Every answer is kept in `answers` for failure messages.

export const answers = [];

class ForwardingXMLHttpRequest {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.headers = {};
  }
  open(method, url) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name, value) {
    this.headers[name] = value;
  }
  send(body) {
    fetch(this.url, { method: this.method, headers: this.headers, body }).then(async (response) => {
      answers.push({ status: response.status, body: await response.text() });
      this.readyState = 4;
      this.status = response.status;
      if (typeof this.onreadystatechange === 'function') this.onreadystatechange();
    });
  }
}

globalThis.window = { XMLHttpRequest: ForwardingXMLHttpRequest, addEventListener() {}, console };
