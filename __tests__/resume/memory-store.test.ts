/**
 * MemoryStore, the default store, against the ResumeStore contract (__tests__/helpers/store-contract.ts).
 */
import { MemoryStore } from '../../lib/store/memory';
import { describeResumeStore } from '../helpers/store-contract';

describeResumeStore('MemoryStore', async () => ({ store: new MemoryStore(), teardown: async () => undefined }));
