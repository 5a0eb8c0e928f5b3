const app = getApp();

Page({
  data: {
    todos: [],
    input: '',
    lastSend: 'nothing sent yet',
    // Dev only: "Log in as" sends the code dev:<name>, which `stsvend dev` accepts once.
    devLogin: !!(app.config.login && app.config.devUser),
    devName: app.config.devUser,
    who: app.config.login ? (app.config.devUser ? 'dev-' + app.config.devUser : 'the Alipay user') : 'nobody (a no-login profile)',
  },

  onLoad() {
    app.onSlsResult = (r) => {
      this.setData({
        lastSend: r.ok ? `HTTP 200, ${r.logs} event(s) accepted` : `failed: ${r.status ? `HTTP ${r.status} ${r.body}` : r.error}`,
      });
    };
    app.sls.send({ event: 'todo', action: 'open', total: this.data.todos.length });
  },

  onUnload() {
    app.onSlsResult = null;
  },

  onDevName(e) {
    this.setData({ devName: e.detail.value });
  },

  logInAs() {
    const name = this.data.devName.trim();
    if (!name) return;
    this.setData({ who: 'logging in as dev-' + name + '…' });
    app.sls.logInAs(name).then(
      (who) => this.setData({ who }),
      (err) => this.setData({ who: 'login failed: ' + err.message }),
    );
  },

  onInput(e) {
    this.setData({ input: e.detail.value });
  },

  addTodo() {
    const text = this.data.input.trim();
    if (!text) return;
    const todo = { text, done: false, createdAt: Date.now() };
    const todos = this.data.todos.concat([todo]);
    this.setData({ todos, input: '' });
    app.sls.send({ event: 'add-todo', text, total: todos.length, todo });
  },

  toggleTodo(e) {
    const index = e.currentTarget.dataset.index;
    const todos = this.data.todos.map((t, i) => (i === index ? Object.assign({}, t, { done: !t.done }) : t));
    this.setData({ todos });
    app.sls.send({ event: 'todo', action: todos[index].done ? 'done' : 'undone', text: todos[index].text });
  },
});
