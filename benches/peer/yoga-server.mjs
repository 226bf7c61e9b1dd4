// The Node peer of the population workload: GraphQL Yoga with @envelop/response-cache on Redis,
// DataLoader and pg, over the same Postgres tables as padel-bff, serving the same
// `authContext` and `courtAvailability` shapes the population's documents ask for. Written the
// way a Node team would write this BFF: per-request loaders, one statement per entity batch,
// the response cache keyed by the signed-in user (its `session`), 60 s TTL. Started by
// benches/peer/yoga.sh (which installs the packages from npm into a scratch folder).
//
// Env: DATABASE_URL, REDIS_URL, PEER_PORT, PEER_HOST, PEER_POOL_MAX, PEER_JWT_SECRET,
// PEER_CACHE_PREFIX.
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createSchema, createYoga } from 'graphql-yoga';
import { useResponseCache } from '@envelop/response-cache';
import { createRedisCache } from '@envelop/response-cache-redis';
import DataLoader from 'dataloader';
import pg from 'pg';
import Redis from 'ioredis';

const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.PEER_POOL_MAX || 16),
});
// DATE and TIME as text, as the GraphQL answers write them.
pg.types.setTypeParser(1082, (v) => v);
pg.types.setTypeParser(1083, (v) => v.slice(0, 5));
const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379', {
  keyPrefix: process.env.PEER_CACHE_PREFIX || 'yoga:',
});
const secret = process.env.PEER_JWT_SECRET || '';

/** The user id of a valid HS256 bearer token (signature and expiry), or null. */
function userOf(request) {
  const header = request.headers.get('authorization') || '';
  const token = header.startsWith('Bearer ') ? header.slice(7) : '';
  const [head, body, signature] = token.split('.');
  if (!signature) return null;
  const expected = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  const a = Buffer.from(signature);
  const b = Buffer.from(expected);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return null;
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
  if (!claims.exp || claims.exp * 1000 < Date.now()) return null;
  return Number(claims.sub);
}

const byIds = (sql) => new DataLoader(async (ids) => {
  const { rows } = await pool.query(sql, [ids]);
  return ids.map((id) => rows.filter((r) => String(r.key) === String(id)));
});

function loaders() {
  return {
    user: byIds('SELECT id AS key, id, email, full_name, current_organization_id FROM users WHERE id = ANY($1) AND is_active'),
    orgMemberships: byIds(`SELECT m.user_id AS key, m.role, o.id, o.name FROM organization_memberships m
      JOIN organizations o ON o.id = m.organization_id WHERE m.user_id = ANY($1) AND m.is_active AND o.is_active ORDER BY o.name`),
    clubMemberships: byIds(`SELECT m.user_id AS key, m.role, c.id, c.name, c.organization_id FROM club_memberships m
      JOIN clubs c ON c.id = m.club_id WHERE m.user_id = ANY($1) AND m.is_active AND c.is_active ORDER BY c.name`),
    club: byIds('SELECT id AS key, id, name, organization_id FROM clubs WHERE id = ANY($1) AND is_active'),
    courts: byIds('SELECT club_id AS key, id, name, is_maintenance FROM courts WHERE club_id = ANY($1) AND is_active ORDER BY id'),
    schedule: byIds('SELECT club_id AS key, weekday, opens_at, closes_at FROM club_schedules WHERE club_id = ANY($1) AND is_active'),
    // Keys: "club|date".
    reservations: new DataLoader(async (keys) => {
      const pairs = keys.map((k) => k.split('|'));
      const { rows } = await pool.query(
        `SELECT r.club_id || '|' || r.date AS key, r.court_id, r.start_time, r.end_time FROM reservations r
         JOIN unnest($1::bigint[], $2::date[]) AS k(club_id, date) ON r.club_id = k.club_id AND r.date = k.date
         WHERE r.status <> 'cancelled'`,
        [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
      );
      return keys.map((key) => rows.filter((r) => r.key === key));
    }),
    permissions: new DataLoader(async (roleSets) => {
      const { rows } = await pool.query('SELECT role, permission FROM role_permissions');
      return roleSets.map((roles) => [...new Set(rows.filter((r) => roles.split(',').includes(r.role)).map((r) => r.permission))].sort());
    }),
  };
}

const minutes = (t) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3, 5));
const hhmm = (m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

const typeDefs = /* GraphQL */ `
  scalar Date
  type Query {
    authContext: AuthContext!
    courtAvailability(clubId: ID!, date: Date!, slotMinutes: Int = 90): CourtAvailability!
  }
  type AuthContext {
    user: User!
    currentOrganization: Organization
    organizations: [OrganizationMembership!]!
    clubs: [ClubMembership!]!
    permissions: [String!]!
  }
  type User { id: ID! email: String! fullName: String! }
  type Organization { id: ID! name: String! }
  type OrganizationMembership { role: String! organization: Organization! }
  type ClubMembership { role: String! club: Club! }
  type Club { id: ID! name: String! }
  type CourtAvailability { club: Club! date: Date! slotMinutes: Int! courts: [CourtSlots!]! }
  type CourtSlots { court: Court! availableCount: Int! slots: [Slot!]! }
  type Court { id: ID! name: String! }
  type Slot { start: String! end: String! available: Boolean! }
`;

const resolvers = {
  Query: {
    async authContext(_, __, { userId, loaders: l }) {
      if (!userId) throw new Error('UNAUTHENTICATED');
      const [user] = await l.user.load(userId);
      if (!user) throw new Error('UNAUTHENTICATED');
      const [orgs, clubs] = await Promise.all([l.orgMemberships.load(userId), l.clubMemberships.load(userId)]);
      const current = orgs.find((o) => String(o.id) === String(user.current_organization_id)) || orgs[0] || null;
      const roles = current
        ? [...orgs.filter((o) => o.id === current.id).map((o) => o.role), ...clubs.filter((c) => c.organization_id === current.id).map((c) => c.role)]
        : [];
      return {
        user: { id: user.id, email: user.email, fullName: user.full_name },
        currentOrganization: current && { id: current.id, name: current.name },
        organizations: orgs.map((o) => ({ role: o.role.toUpperCase(), organization: { id: o.id, name: o.name } })),
        clubs: clubs.map((c) => ({ role: c.role.toUpperCase(), club: { id: c.id, name: c.name } })),
        permissions: roles.length ? l.permissions.load([...new Set(roles)].sort().join(',')) : [],
      };
    },
    async courtAvailability(_, { clubId, date, slotMinutes }, { userId, loaders: l }) {
      if (!userId) throw new Error('UNAUTHENTICATED');
      const [[club], memberships, orgs] = await Promise.all([l.club.load(clubId), l.clubMemberships.load(userId), l.orgMemberships.load(userId)]);
      const member = club && (memberships.some((m) => String(m.id) === String(clubId))
        || orgs.some((o) => o.id === club.organization_id && (o.role === 'owner' || o.role === 'admin')));
      if (!member) throw new Error('NOT_FOUND');
      const weekday = ((new Date(`${date}T00:00:00Z`).getUTCDay() + 6) % 7) + 1;
      const [courts, schedule, taken] = await Promise.all([l.courts.load(clubId), l.schedule.load(clubId), l.reservations.load(`${clubId}|${date}`)]);
      const day = schedule.find((s) => s.weekday === weekday);
      return {
        club: { id: club.id, name: club.name },
        date,
        slotMinutes,
        courts: courts.map((court) => {
          const slots = [];
          if (day) {
            for (let m = minutes(day.opens_at); m + slotMinutes <= minutes(day.closes_at); m += slotMinutes) {
              const busy = court.is_maintenance || taken.some((r) => String(r.court_id) === String(court.id)
                && minutes(r.start_time) < m + slotMinutes && m < minutes(r.end_time));
              slots.push({ start: hhmm(m), end: hhmm(m + slotMinutes), available: !busy });
            }
          }
          return { court: { id: court.id, name: court.name }, availableCount: slots.filter((s) => s.available).length, slots };
        }),
      };
    },
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphiql: false,
  logging: false,
  maskedErrors: false,
  context: ({ request }) => ({ userId: userOf(request), loaders: loaders() }),
  plugins: [
    useResponseCache({
      session: (context) => (context.userId ? String(context.userId) : null),
      cache: createRedisCache({ redis }),
      ttl: 60_000,
    }),
  ],
});

createServer(yoga).listen(Number(process.env.PEER_PORT || 5679), process.env.PEER_HOST || '127.0.0.1');
