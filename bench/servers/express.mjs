// An Express route writing the SSE frames by hand: the same code as raw.mjs, behind Express's router.
import express from 'express';
import { byHand, serve } from './common.mjs';

const app = express();
app.get('/stream', byHand.stream);
app.get('/tick', byHand.tick);
app.get('/idle', byHand.idle);
serve(app);
