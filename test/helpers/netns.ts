// Several "hosts" on one machine (network namespaces on a bridge): bench/netns-lab.ts, which the chaos
// run (bench/chaos.ts) uses too.
export { Lab, netnsUnavailable, type Host } from '../../bench/netns-lab.js';
