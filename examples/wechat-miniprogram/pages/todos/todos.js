const app = getApp();

Page({
  data: {
    todos: [],
    input: '',
    lastSend: 'nothing sent yet',
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
